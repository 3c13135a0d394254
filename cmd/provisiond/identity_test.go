package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

// The failure classes of issue 11, each as its own test on the real path.

// serviceByID reads a service through the API.
func (s *system) serviceByID(id string) map[string]any {
	s.t.Helper()
	_, resp := s.do("GET", "/api/services/"+id, "")
	return resp["service"].(map[string]any)
}

// vmsOf returns the simulated VMs that carry the service's tag or
// description: the ones the fleet made or claimed for it.
func (s *system) vmsOf(service string) []sim.VM {
	var out []sim.VM
	for _, vm := range s.sim.VMs() {
		if slices.Contains(vm.Tags, jobs.VMTag(uuid.MustParse(service))) || strings.Contains(vm.Description, service) {
			out = append(out, vm)
		}
	}
	return out
}

// jobLog returns the job's log lines.
func (s *system) jobLog(id string) []string {
	s.t.Helper()
	events, err := s.q.ListJobEvents(context.Background(), queries.ListJobEventsParams{JobID: uuid.MustParse(id)})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		if e.Type == "log" {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestRetryAfterARefusedStartDoesNotAdoptAnEarlierJobsTask(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	first := s.waitJob(s.action("web-1", "reset"), 30*time.Second)
	if first["status"] != "succeeded" {
		t.Fatalf("first reset %s: %v", first["status"], first["error"])
	}
	// Refused, not carried out: the retry must reset the VM itself rather
	// than take the first job's qmreset, which ran just before its intent.
	s.sim.Inject(simkit.Fault{Op: "reset", Times: 1, Status: 500, Message: "got timeout"})
	second := s.waitJob(s.action("web-1", "reset"), 30*time.Second)
	if second["status"] != "succeeded" || second["attempts"].(float64) < 2 {
		t.Fatalf("second reset %s after %v attempts: %v; want succeeded after a retry", second["status"], second["attempts"], second["error"])
	}
	if n := s.sim.CountTasks("qmreset", 100); n != 2 {
		t.Errorf("the VM was reset %d times by two reset jobs, want 2", n)
	}
}

func TestTasksEndingWithWarningsSucceedAndLogTheirWarnings(t *testing.T) {
	tests := []struct {
		name          string
		method, path  string
		fault         simkit.Fault
		wantInLogLine string
	}{
		// qemu-server warns when asked to delete a key that is not set.
		{"rescue off when it is off already", "DELETE", "/rescue", simkit.Fault{}, "cannot delete 'ide2'"},
		{"a backup whose vzdump warned", "POST", "/backups", simkit.Fault{Op: "vzdump", Times: 1, TaskWarning: "guest agent not responding"}, "guest agent not responding"},
		{"a backup delete that warned", "DELETE", "/backups/", simkit.Fault{Op: "content.delete", Times: 1, TaskWarning: "notes file already gone"}, "notes file already gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{})
			if tt.fault.Op != "" {
				s.sim.Inject(tt.fault)
			}
			path := tt.path
			if strings.HasSuffix(path, "/") {
				path += s.backups("web-1")[0]["id"].(string)
			}
			id := s.startJob(tt.method, "/api/services/"+s.services["web-1"].ID.String()+path, "")
			if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
				t.Fatalf("job %s: %v; a task ending with warnings succeeded", job["status"], job["error"])
			}
			logged := s.jobLog(id)
			if !slices.ContainsFunc(logged, func(l string) bool {
				return strings.Contains(l, "WARNINGS: 1") && strings.Contains(l, tt.wantInLogLine)
			}) {
				t.Errorf("job log %q, want the warning %q", logged, tt.wantInLogLine)
			}
		})
	}
}

func TestLostCloneAnswerWhileTheCloneRunsMakesOneVM(t *testing.T) {
	t.Parallel()
	// A full clone runs 1.5 s; the retry comes while it still runs, when
	// the new VM has its clone lock and no description yet.
	s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond})
	s.sim.Inject(simkit.Fault{Op: "clone", Times: 1, Drop: true})
	svc, id := s.provision(`{"name":"vps","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":20},"templateId":9000}`)
	if job := s.waitJob(id, 60*time.Second); job["status"] != "succeeded" {
		t.Fatalf("provision %s: %v", job["status"], job["error"])
	}
	if n := s.sim.CountTasks("qmclone", 0); n != 1 {
		t.Errorf("%d clones, want 1", n)
	}
	if vms := s.vmsOf(svc); len(vms) != 1 {
		t.Errorf("%d VMs of the service (%+v), want 1 and no orphan", len(vms), vms)
	}
}

func TestReinstallCancelledAtItsDestroyIsCarriedThrough(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond})
	before := s.vm("web-1")
	id := s.startJob("POST", "/api/services/"+s.services["web-1"].ID.String()+"/reinstall", `{"templateId":9000}`)
	jobtest.Eventually(t, 20*time.Second, "the destroy to start", func() bool { return s.sim.CountTasks("qmdestroy", 100) == 1 })
	status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", "")
	if status != http.StatusConflict || resp["errorKey"] != "job_committed" {
		t.Fatalf("cancel: %d %v; want 409 job_committed", status, resp)
	}
	if job := s.waitJob(id, 60*time.Second); job["status"] != "succeeded" {
		t.Fatalf("reinstall %s: %v; want it carried through", job["status"], job["error"])
	}
	after := s.vm("web-1")
	if after.Status != "running" || after.Config["net0"] != before.Config["net0"] ||
		!slices.Contains(after.Tags, jobs.VMTag(s.services["web-1"].ID)) {
		t.Errorf("VM after the reinstall: %s, net0 %q (was %q), tags %v", after.Status, after.Config["net0"], before.Config["net0"], after.Tags)
	}
}

// foreignVM puts another customer's VM where the demo service's VM was: the
// VMID was handed out again behind the fleet's back.
func (s *system) foreignVM(service string) sim.VM {
	s.t.Helper()
	old := s.vm(service)
	foreign := sim.VM{Node: old.Node, VMID: old.VMID, Name: "someone-else", Status: "running", Cores: 1, MemoryMB: 1024, DiskGB: 10}
	s.sim.AddVM(foreign)
	return foreign
}

func TestJobsNeverActOnAVMThatIsNotTheServices(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	foreign := s.foreignVM("web-1")
	job := s.waitJob(s.action("web-1", "stop"), 30*time.Second)
	if msg, _ := job["error"].(string); job["status"] != "failed" || !strings.Contains(msg, "is not this service's") {
		t.Fatalf("stop on another's VM ended %s: %q; want failed saying the VM is not the service's", job["status"], msg)
	}
	if vm, _ := s.sim.VM(foreign.Node, foreign.VMID); vm.Status != "running" || s.sim.CountTasks("qmstop", foreign.VMID) != 0 {
		t.Fatalf("the other customer's VM was touched: %s", vm.Status)
	}
	got := s.serviceByID(svc)
	if got["status"] != "needs_repair" || !strings.Contains(got["repairReason"].(string), "is not this service's") {
		t.Fatalf("service %v (%v), want needs_repair with the reason", got["status"], got["repairReason"])
	}
	if status, resp := s.do("GET", "/api/services/"+svc+"/status", ""); status != http.StatusConflict || resp["errorKey"] != "service_needs_repair" {
		t.Errorf("live status of a service needing repair: %d %v; want 409 service_needs_repair", status, resp)
	}
	// A registered VM has no recorded install: the repair needs a template.
	if status, _ := s.do("POST", "/api/services/"+svc+"/repair", ""); status != http.StatusBadRequest {
		t.Errorf("repair without a template: %d, want 400", status)
	}
	repair := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/repair", `{"templateId":9000}`), 60*time.Second)
	if repair["status"] != "succeeded" {
		t.Fatalf("repair %s: %v", repair["status"], repair["error"])
	}
	var res jobs.RepairResult
	b, _ := json.Marshal(repair["result"])
	json.Unmarshal(b, &res)
	if res.Action != "moved" || res.VMID == foreign.VMID {
		t.Errorf("repair result %+v, want the service moved to a new VMID", res)
	}
	got = s.serviceByID(svc)
	if got["status"] != "active" {
		t.Errorf("service after its repair: %v, want active", got["status"])
	}
	if vms := s.vmsOf(svc); len(vms) != 1 || vms[0].VMID != res.VMID || vms[0].Status != "running" {
		t.Errorf("the service's VMs after its repair: %+v, want one running at %d", vms, res.VMID)
	}
	if vm, _ := s.sim.VM(foreign.Node, foreign.VMID); vm.Name != "someone-else" || vm.Status != "running" {
		t.Errorf("the other customer's VM after the repair: %+v", vm)
	}
}

func TestReinstallFailingAfterItsDestroyLeavesTheServiceToRepairInPlace(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	before := s.vm("web-1")
	s.sim.Inject(simkit.Fault{Op: "clone", Times: 1, TaskError: "storage 'local-lvm' is full"})
	job := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/reinstall", `{"templateId":9000}`), 60*time.Second)
	if job["status"] != "failed" {
		t.Fatalf("reinstall %s, want failed on the clone", job["status"])
	}
	if got := s.serviceByID(svc); got["status"] != "needs_repair" {
		t.Fatalf("service %v after a reinstall that destroyed its VM and failed, want needs_repair", got["status"])
	}
	repair := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/repair", ""), 60*time.Second)
	if repair["status"] != "succeeded" || repair["result"].(map[string]any)["action"] != "recloned" {
		t.Fatalf("repair %s (%v): %v; want recloned", repair["status"], repair["result"], repair["error"])
	}
	after := s.vm("web-1")
	if after.Status != "running" || after.Config["net0"] != before.Config["net0"] {
		t.Errorf("repaired VM %s with net0 %q, want running with the old %q", after.Status, after.Config["net0"], before.Config["net0"])
	}
	if got := s.serviceByID(svc); got["status"] != "active" || got["repairReason"] != nil {
		t.Errorf("service after its repair: %v (%v), want active", got["status"], got["repairReason"])
	}
}

func TestNodeUpForMoreThan497DaysIsDrivenLikeAnyOther(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	s.sim.SetNodeUptime("pve2", 600*24*time.Hour) // pstart has 9 hex digits
	job := s.waitJob(s.action("game-1", "restart"), 30*time.Second)
	if job["status"] != "succeeded" || job["attempts"].(float64) != 1 {
		t.Fatalf("restart on a long-running node %s after %v attempts: %v; want succeeded at once", job["status"], job["attempts"], job["error"])
	}
	if n := s.sim.CountTasks("qmstart", 102); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
}

// TestEveryVPSJobCancelledAtEveryStepLeavesTheServiceSound cancels each VPS
// job kind while it is at each of its steps. Whatever the step, the job ends
// cancelled (the service as before) or, past its point of no return, is
// carried through (as asked); either way the service points at a VM of its
// own that is not locked, or at none when no VM was made yet, and a service
// that needs repair is repaired by its repair job.
func TestEveryVPSJobCancelledAtEveryStepLeavesTheServiceSound(t *testing.T) {
	web1 := func(s *system) string { return "/api/services/" + s.services["web-1"].ID.String() }
	kinds := []struct {
		kind  string
		steps []string
		// start starts the job and returns its id and its service's id.
		start func(s *system) (job, service string)
	}{
		{"vps.provision", []string{"place", "clone", "configure", "resize", "start", "agent"}, func(s *system) (string, string) {
			svc, id := s.provision(`{"name":"v","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":20},"templateId":9000}`)
			return id, svc
		}},
		{"vps.reinstall", []string{"inspect", "stop", "destroy", "clone", "configure", "resize", "start", "agent"}, func(s *system) (string, string) {
			return s.startJob("POST", web1(s)+"/reinstall", `{"templateId":9000}`), s.services["web-1"].ID.String()
		}},
		{"vps.resize", []string{"inspect", "stop", "configure", "resize", "start"}, func(s *system) (string, string) {
			return s.startJob("POST", web1(s)+"/upgrade", `{"cores":4,"diskGb":60}`), s.services["web-1"].ID.String()
		}},
		{"vps.backup", []string{"queue", "backup", "prune"}, func(s *system) (string, string) {
			return s.startJob("POST", web1(s)+"/backups", ""), s.services["web-1"].ID.String()
		}},
		{"vps.restore", []string{"stop", "restore", "plan", "start"}, func(s *system) (string, string) {
			return s.startJob("POST", web1(s)+"/backups/"+s.backups("web-1")[0]["id"].(string), ""), s.services["web-1"].ID.String()
		}},
		{"vps.backup.delete", []string{"delete"}, func(s *system) (string, string) {
			return s.startJob("DELETE", web1(s)+"/backups/"+s.backups("web-1")[0]["id"].(string), ""), s.services["web-1"].ID.String()
		}},
		{"vps.rescue", []string{"password", "configure", "reboot"}, func(s *system) (string, string) {
			return s.startJob("POST", web1(s)+"/rescue", ""), s.services["web-1"].ID.String()
		}},
		{"vps.rescue off", []string{"configure", "reboot"}, func(s *system) (string, string) {
			s.runJob("POST", web1(s)+"/rescue", "")
			return s.startJob("DELETE", web1(s)+"/rescue", ""), s.services["web-1"].ID.String()
		}},
		{"service.power restart", []string{"shutdown", "start"}, func(s *system) (string, string) {
			return s.action("web-1", "restart"), s.services["web-1"].ID.String()
		}},
		{"vps.repair", []string{"inspect", "clone", "configure", "resize", "start", "agent"}, func(s *system) (string, string) {
			svc := s.services["web-1"].ID.String()
			s.foreignVM("web-1")
			s.do("GET", "/api/services/"+svc+"/status", "") // finds the foreign VM: needs_repair
			return s.startJob("POST", web1(s)+"/repair", `{"templateId":9000}`), svc
		}},
	}
	for _, k := range kinds {
		for _, step := range k.steps {
			t.Run(k.kind+" at "+step, func(t *testing.T) {
				t.Parallel()
				s := newSystem(t, systemOpts{taskDuration: 300 * time.Millisecond})
				before := s.vm("web-1").Status
				id, svc := k.start(s)
				s.sim.Inject(simkit.Fault{Latency: 100 * time.Millisecond})
				var cancelled bool
				jobtest.Eventually(t, 60*time.Second, "the job to reach "+step, func() bool {
					job := s.job(id)
					if job["step"] == step || job["status"] == "succeeded" || job["status"] == "failed" {
						status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", "")
						switch {
						case status == http.StatusOK || status == http.StatusAccepted:
							cancelled = true
						case status == http.StatusConflict && (resp["errorKey"] == "job_committed" || resp["errorKey"] == "job_finished"):
						default:
							t.Fatalf("cancel: %d %v", status, resp)
						}
						return true
					}
					return false
				})
				job := s.waitJob(id, 60*time.Second)
				switch {
				case job["status"] == "succeeded":
				case job["status"] == "cancelled" && cancelled:
				default:
					t.Fatalf("job ended %s (%v); want cancelled as asked or carried through", job["status"], job["error"])
				}
				s.sim.ClearFaults()
				t.Logf("outcome: job %s at step %v; service %s", job["status"], job["step"], s.checkSound(svc))
				if job["status"] == "cancelled" && svc == s.services["web-1"].ID.String() && k.kind != "vps.repair" {
					if after := s.vm("web-1").Status; after != before {
						t.Errorf("the cancelled job left the VM %s; it was %s (%v)", after, before, job["error"])
					}
				}
			})
		}
	}
}

// checkSound checks that the service points at a VM of its own that is not
// locked (or, for one never provisioned, at none and has no VM), repairing
// it first when it says it needs repair. It says which it found.
func (s *system) checkSound(svc string) (found string) {
	s.t.Helper()
	got := s.serviceByID(svc)
	found = fmt.Sprint(got["status"])
	if got["status"] == "needs_repair" {
		found = "needs_repair, repaired"
		if repair := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/repair", `{"templateId":9000}`), 60*time.Second); repair["status"] != "succeeded" {
			s.t.Fatalf("repair of a service that needs it ended %s: %v", repair["status"], repair["error"])
		}
		got = s.serviceByID(svc)
	}
	var ref struct {
		Node string
		VMID int
	}
	b, _ := json.Marshal(got["providerRef"])
	json.Unmarshal(b, &ref)
	if got["status"] == "pending" {
		if ref.VMID != 0 || len(s.vmsOf(svc)) != 0 {
			s.t.Errorf("a pending service points at %+v and has VMs %+v; want neither", ref, s.vmsOf(svc))
		}
		return found
	}
	if got["status"] != "active" {
		s.t.Fatalf("service is %v (%v); want active", got["status"], got["repairReason"])
	}
	vm, ok := s.sim.VM(ref.Node, ref.VMID)
	if !ok {
		s.t.Fatalf("active service points at VM %d on %s, which does not exist", ref.VMID, ref.Node)
	}
	if !slices.Contains(vm.Tags, jobs.VMTag(uuid.MustParse(svc))) || vm.Lock != "" {
		s.t.Errorf("the service's VM %d: tags %v, lock %q; want its own tag and no lock", vm.VMID, vm.Tags, vm.Lock)
	}
	if vms := s.vmsOf(svc); len(vms) != 1 {
		s.t.Errorf("the service has %d VMs (%+v), want 1", len(vms), vms)
	}
	return found
}

func TestAVMMovedToAnotherNodeIsFollowed(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	if !s.sim.MoveVM("pve1", 100, "pve2") {
		t.Fatal("could not move the VM")
	}
	if job := s.waitJob(s.action("web-1", "stop"), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("stop of a migrated VM %s: %v", job["status"], job["error"])
	}
	if vm, _ := s.sim.VM("pve2", 100); vm.Status != "stopped" {
		t.Errorf("the migrated VM is %s, want stopped", vm.Status)
	}
	ref := s.serviceByID(svc)["providerRef"].(map[string]any)
	if ref["node"] != "pve2" {
		t.Errorf("the service's reference %v, want it to follow the VM to pve2", ref)
	}
}

func TestTerminationLeavesAnotherCustomersVMAndItsBackupsAlone(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	// Our own backup of web-1, then its VMID goes to someone else, who has
	// backups of their own (the two seeded ones).
	s.runJob("POST", "/api/services/"+s.services["web-1"].ID.String()+"/backups", "")
	foreign := s.foreignVM("web-1")
	resp := s.cancel("web-1", "immediately")
	if job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("termination %s: %v", job["status"], job["error"])
	}
	if vm, ok := s.sim.VM(foreign.Node, foreign.VMID); !ok || vm.Status != "running" || s.sim.CountTasks("qmdestroy", foreign.VMID) != 0 {
		t.Errorf("the other customer's VM after the termination: %+v (exists %v)", vm, ok)
	}
	var left []string
	for _, v := range s.sim.Tasks("imgdel", foreign.VMID) {
		left = append(left, v.UPID)
	}
	if len(left) != 1 {
		t.Errorf("%d backups deleted, want only the service's own one", len(left))
	}
	if got := s.service("web-1"); got["status"] != "terminated" {
		t.Errorf("service %v, want terminated", got["status"])
	}
}

func TestRepairOfASuspendedServiceLeavesItSuspended(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	if job := s.waitJob(s.action("web-1", "suspend"), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("suspend %s: %v", job["status"], job["error"])
	}
	s.foreignVM("web-1")
	s.do("GET", "/api/services/"+svc+"/status", "") // finds the foreign VM
	if got := s.serviceByID(svc); got["status"] != "needs_repair" {
		t.Fatalf("service %v, want needs_repair", got["status"])
	}
	repair := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/repair", `{"templateId":9000}`), 60*time.Second)
	if repair["status"] != "succeeded" {
		t.Fatalf("repair %s: %v", repair["status"], repair["error"])
	}
	if got := s.serviceByID(svc); got["status"] != "suspended" {
		t.Errorf("service after its repair: %v, want suspended", got["status"])
	}
	if vms := s.vmsOf(svc); len(vms) != 1 || vms[0].Status != "stopped" {
		t.Errorf("the repaired VM %+v, want one, left off", vms)
	}
	if got := s.serviceByID(svc); got["powerState"] != "stopped" {
		t.Errorf("recorded power state %v, want stopped", got["powerState"])
	}
}

func TestMigrateTagsVMsRegisteredBeforeIdentityChecks(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	ctx := context.Background()
	team := s.services["web-1"].TeamID
	register := func(vmid int, tags ...string) queries.Service {
		s.sim.AddVM(sim.VM{Node: "pve2", VMID: vmid, Status: "running", Tags: tags})
		ref, _ := json.Marshal(map[string]any{"node": "pve2", "vmid": vmid})
		svc, err := s.q.CreateService(ctx, queries.CreateServiceParams{TeamID: team, Name: "old", Provider: "proxmox",
			ProviderRef: ref, Plan: []byte(`{"cores":1,"memoryMb":512,"diskGb":8}`), Status: "active"})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	plain := register(150)
	other := register(151, "svc-00000000-0000-0000-0000-000000000001")
	if err := s.app.claimRegisteredVMs(ctx); err != nil {
		t.Fatal(err)
	}
	if vm, _ := s.sim.VM("pve2", 150); !slices.Contains(vm.Tags, jobs.VMTag(plain.ID)) {
		t.Errorf("VM 150's tags %v, want its service's", vm.Tags)
	}
	if vm, _ := s.sim.VM("pve2", 151); slices.Contains(vm.Tags, jobs.VMTag(other.ID)) {
		t.Errorf("VM 151, another service's, was tagged: %v", vm.Tags)
	}
	if err := s.app.claimRegisteredVMs(ctx); err != nil {
		t.Errorf("a second run: %v", err)
	}
}

func TestReinstallCancelledAfterItStoppedTheVMStartsItAgain(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 300 * time.Millisecond})
	// Reading the VM's state is slow: the cancellation lands after the
	// stop task, while the step checks that the VM is off.
	s.sim.Inject(simkit.Fault{Op: "status.current", Latency: time.Second})
	id := s.startJob("POST", "/api/services/"+s.services["web-1"].ID.String()+"/reinstall", `{"templateId":9000}`)
	jobtest.Eventually(t, 30*time.Second, "the VM to be stopped", func() bool { return s.vm("web-1").Status == "stopped" })
	if status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", ""); status != http.StatusAccepted && status != http.StatusOK {
		t.Fatalf("cancel: %d %v", status, resp)
	}
	job := s.waitJob(id, 30*time.Second)
	if msg, _ := job["error"].(string); job["status"] != "cancelled" || !strings.Contains(msg, "running again") {
		t.Fatalf("job %s: %q; want cancelled, the VM running again", job["status"], msg)
	}
	if vm := s.vm("web-1"); vm.Status != "running" || s.sim.CountTasks("qmdestroy", 100) != 0 {
		t.Errorf("VM after a reinstall cancelled before its destroy: %s, %d destroys; want running, none", vm.Status, s.sim.CountTasks("qmdestroy", 100))
	}
}

func TestRepairOfAVMLockedWithNoTaskSaysHowToUnlockIt(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	s.sim.Inject(simkit.Fault{Op: "qemu.create", Times: 1, TaskError: "restore failed"})
	restore := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/backups/"+s.backups("web-1")[0]["id"].(string), ""), 30*time.Second)
	if restore["status"] != "failed" || s.serviceByID(svc)["status"] != "needs_repair" {
		t.Fatalf("restore %s, service %v; want failed and needs_repair", restore["status"], s.serviceByID(svc)["status"])
	}
	if lock := s.vm("web-1").Lock; lock == "" {
		t.Fatalf("the failed restore left no lock; this test needs one")
	}
	repair := s.waitJob(s.startJob("POST", "/api/services/"+svc+"/repair", `{"templateId":9000}`), 30*time.Second)
	if msg, _ := repair["error"].(string); repair["status"] != "failed" || !strings.Contains(msg, "qm unlock 100") {
		t.Fatalf("repair %s: %q; want failed at once saying how to unlock the VM", repair["status"], msg)
	}
	if got := s.serviceByID(svc); got["status"] != "needs_repair" || !strings.Contains(got["repairReason"].(string), "qm unlock") {
		t.Errorf("service %v (%v), want needs_repair saying how to unlock", got["status"], got["repairReason"])
	}
}

func TestLiveReadsNeverShowAnotherCustomersVM(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	web1, db1 := s.services["web-1"].ID.String(), s.services["db-1"].ID.String()
	s.foreignVM("web-1")
	for _, path := range []string{"/status", "/traffic?timeframe=hour", "/backups"} {
		if status, resp := s.do("GET", "/api/services/"+web1+path, ""); status != http.StatusConflict || resp["errorKey"] != "service_needs_repair" {
			t.Errorf("GET %s of a service whose VMID holds another's VM: %d %v; want 409 service_needs_repair", path, status, resp)
		}
	}
	if got := s.serviceByID(web1); got["status"] != "needs_repair" {
		t.Errorf("service %v after a read found another's VM, want needs_repair", got["status"])
	}
	// A VM PVE moved to another node is read where it is now.
	s.sim.MoveVM("pve1", 101, "pve2")
	if status, resp := s.do("GET", "/api/services/"+db1+"/status", ""); status != http.StatusOK {
		t.Errorf("GET status of a migrated VM: %d %v; want 200", status, resp)
	}
}

func TestReadDuringAReinstallDoesNotMarkTheService(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond})
	web1 := s.services["web-1"].ID.String()
	id := s.startJob("POST", "/api/services/"+web1+"/reinstall", `{"templateId":9000}`)
	// While the clone runs, VM 100 is the clone's temporary VM: locked,
	// without the service's tag or description yet.
	jobtest.Eventually(t, 30*time.Second, "the clone to run", func() bool { return s.job(id)["step"] == "clone" })
	if status, resp := s.do("GET", "/api/services/"+web1+"/status", ""); status != http.StatusConflict || resp["errorKey"] != "service_busy" {
		t.Errorf("status read while the reinstall clones: %d %v; want 409 service_busy", status, resp)
	}
	// A console (it does not hold the service) meets the clone too: it
	// fails, and leaves the service to the reinstall.
	if console := s.waitJob(s.startJob("POST", "/api/services/"+web1+"/console", ""), 30*time.Second); console["status"] != "failed" {
		t.Errorf("console on the clone of a reinstall: %v (%v), want failed", console["status"], console["error"])
	}
	if job := s.waitJob(id, 60*time.Second); job["status"] != "succeeded" {
		t.Fatalf("reinstall %s: %v", job["status"], job["error"])
	}
	if got := s.serviceByID(web1); got["status"] != "active" {
		t.Errorf("service after the reinstall: %v (%v), want active", got["status"], got["repairReason"])
	}
}

func TestRestoreOfAnOlderArchiveKeepsThePlan(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := "/api/services/" + s.services["web-1"].ID.String()
	oldest := s.backups("web-1")[0]["id"].(string) // made before the upgrade
	s.runJob("POST", path+"/upgrade", `{"diskGb":60}`)
	s.runJob("POST", path+"/backups/"+oldest, "")
	if vm := s.vm("web-1"); vm.DiskGB != 60 || vm.Status != "running" {
		t.Errorf("VM after restoring an archive from before its upgrade: %d GB, %s; want the plan's 60 GB, running", vm.DiskGB, vm.Status)
	}
}

func TestSuspendedVPSIsNotStartedByAPowerAction(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := "/api/services/" + s.services["web-1"].ID.String()
	s.runJob("POST", path+"/action", `{"action":"suspend"}`)
	for _, action := range []string{"start", "restart", "reset"} {
		if status, resp := s.do("POST", path+"/action", `{"action":"`+action+`"}`); status != http.StatusConflict || resp["errorKey"] != "service_suspended" {
			t.Errorf("%s of a suspended VPS: %d %v; want 409 service_suspended", action, status, resp)
		}
	}
}

func TestTerminationWaitsForTheServicesRunningJob(t *testing.T) {
	t.Parallel()
	// The backup's vzdump (three task durations) outlasts the 2 s grace.
	s := newSystem(t, systemOpts{taskDuration: 2 * time.Second})
	path := "/api/services/" + s.services["web-1"].ID.String()
	backup := s.startJob("POST", path+"/backups", "")
	jobtest.Eventually(t, 10*time.Second, "the backup to run", func() bool { return s.sim.CountTasks("vzdump", 100) == 1 })
	resp := s.cancel("web-1", "immediately") // CANCEL_GRACE is 2 s here
	termination := resp["job"].(map[string]any)["id"].(string)
	jobtest.Eventually(t, 20*time.Second, "the termination to wait for the backup", func() bool {
		msg, _ := s.job(termination)["error"].(string)
		return strings.Contains(msg, backup)
	})
	if job := s.waitJob(backup, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("backup %s: %v; the termination must not destroy the VM under it", job["status"], job["error"])
	}
	if job := s.waitJob(termination, 60*time.Second); job["status"] != "succeeded" {
		t.Fatalf("termination %s: %v", job["status"], job["error"])
	}
	if _, ok := s.sim.VM("pve1", 100); ok {
		t.Error("the VM survived its termination")
	}
}
