package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

// sshKey returns a fresh public key in authorized_keys format.
func sshKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// provision asks for a new VPS and returns the service and job ids.
func (s *system) provision(body string) (string, string) {
	s.t.Helper()
	status, resp := s.do("POST", "/api/services", body)
	if status != http.StatusAccepted {
		s.t.Fatalf("POST /api/services: status %d, want 202: %v", status, resp)
	}
	return resp["service"].(map[string]any)["id"].(string), resp["job"].(map[string]any)["id"].(string)
}

func TestProvisionMakesOneRunningVMFromTheTemplate(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	key := sshKey(t)
	body, _ := json.Marshal(map[string]any{
		"name": "vps-9", "provider": "proxmox", "plan": map[string]int{"cores": 2, "memoryMb": 2048, "diskGb": 50},
		"templateId": 9000, "hostname": "web9.example.com", "password": "correct horse battery", "sshKeys": []string{key},
	})
	svcID, jobID := s.provision(string(body))
	job := s.waitJob(jobID, 30*time.Second)
	if job["status"] != "succeeded" {
		t.Fatalf("provision ended %s: %v", job["status"], job["error"])
	}
	var vm struct {
		Node string
		VMID int
	}
	b, _ := json.Marshal(job["result"])
	json.Unmarshal(b, &vm)
	got, ok := s.sim.VM(vm.Node, vm.VMID)
	if !ok {
		t.Fatalf("no VM %d on %s", vm.VMID, vm.Node)
	}
	if got.Status != "running" || got.Cores != 2 || got.MemoryMB != 2048 || got.DiskGB != 50 || !slices.Contains(got.Tags, jobs.VMTag(uuid.MustParse(svcID))) {
		t.Errorf("VM = %+v; want running, 2 cores, 2048 MB, 50 GB, tagged svc-%s", got, svcID)
	}
	if n := s.sim.CountCalls("clone", ""); n != 1 {
		t.Errorf("clone called %d times, want once", n)
	}
	_, resp := s.do("GET", "/api/services/"+svcID, "")
	svc := resp["service"].(map[string]any)
	if svc["status"] != "active" || svc["powerState"] != "running" {
		t.Errorf("service is %v/%v, want active/running", svc["status"], svc["powerState"])
	}
	var args, sealed string
	err := s.db.QueryRow(context.Background(), "SELECT args::text, coalesce(encode(sealed_secrets, 'escape'), '') FROM jobs WHERE id = $1", jobID).Scan(&args, &sealed)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(args, "correct horse") || strings.Contains(sealed, "correct horse") || sealed != "" {
		t.Errorf("the password is in the job row (args %s, sealed %q); want it sealed and dropped when the job ended", args, sealed)
	}
}

func TestUpgradeRestartsForCPUAndGrowsTheDisk(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	status, resp := s.do("POST", "/api/services/"+svc+"/upgrade", `{"cores":4,"diskGb":60}`)
	if status != http.StatusAccepted {
		t.Fatalf("upgrade: %d %v", status, resp)
	}
	job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second)
	if job["status"] != "succeeded" {
		t.Fatalf("resize ended %s: %v", job["status"], job["error"])
	}
	vm := s.vm("web-1")
	if vm.Cores != 4 || vm.MemoryMB != 2048 || vm.DiskGB != 60 || vm.Status != "running" {
		t.Errorf("VM = %d cores, %d MB, %d GB, %s; want 4, 2048, 60, running", vm.Cores, vm.MemoryMB, vm.DiskGB, vm.Status)
	}
	if n := s.sim.CountTasks("qmshutdown", 100); n != 1 {
		t.Errorf("shut down %d times for the CPU change, want once", n)
	}
	_, resp = s.do("GET", "/api/services/"+svc+"/upgrade", "")
	if plan := resp["plan"].(map[string]any); plan["cores"] != 4.0 || plan["diskGb"] != 60.0 {
		t.Errorf("service plan after the resize: %v", plan)
	}
}

func TestResizeRefusesWhatCannotBeDone(t *testing.T) {
	tests := []struct {
		name, path, body, wantErr string
	}{
		{"smaller disk", "upgrade", `{"diskGb":10}`, "diskGb cannot be smaller than the current 40 GB: disks only grow"},
		{"nothing to change", "upgrade", `{}`, "give at least one of cores, memoryMb and diskGb"},
		{"same plan", "change-plan", `{"plan":{"cores":2,"memoryMb":2048,"diskGb":40}}`, "the plan is the same as the current one"},
		{"plan out of range", "apply-downgrade", `{"plan":{"cores":0,"memoryMb":2048,"diskGb":40}}`, "plan.cores must be from 1 to 512"},
	}
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"].ID.String()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, resp := s.do("POST", "/api/services/"+svc+"/"+tt.path, tt.body)
			errs, _ := resp["validationErrors"].([]any)
			if status != http.StatusBadRequest || len(errs) == 0 || errs[0] != tt.wantErr {
				t.Errorf("%d %v; want 400 saying %q", status, resp, tt.wantErr)
			}
		})
	}
	_, resp := s.do("GET", "/api/jobs?service="+svc, "")
	if jobs, _ := resp["jobs"].([]any); len(jobs) != 0 {
		t.Errorf("refused requests left %d jobs", len(jobs))
	}
}

func TestReinstallKeepsTheVMIDAndMAC(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	before := s.vm("web-1")
	svc := s.services["web-1"].ID.String()
	status, resp := s.do("POST", "/api/services/"+svc+"/reinstall",
		`{"os":"debian-12-template","hostname":"fresh.example.com","password":"a long password"}`)
	if status != http.StatusAccepted {
		t.Fatalf("reinstall: %d %v", status, resp)
	}
	job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second)
	if job["status"] != "succeeded" {
		t.Fatalf("reinstall ended %s: %v", job["status"], job["error"])
	}
	after := s.vm("web-1")
	if after.Status != "running" || after.Name != "fresh.example.com" || after.DiskGB != 40 {
		t.Errorf("VM after reinstall: %s, %q, %d GB; want running, fresh.example.com, 40 GB", after.Status, after.Name, after.DiskGB)
	}
	if after.Config["net0"] != before.Config["net0"] || before.Config["net0"] == "" {
		t.Errorf("net0 %q, want the old %q (same MAC)", after.Config["net0"], before.Config["net0"])
	}
	for op, want := range map[string]int{"clone": 1, "destroy": 1} {
		if n := s.sim.CountCalls(op, ""); n != want {
			t.Errorf("%s called %d times, want %d", op, n, want)
		}
	}
}

// backups lists a service's backups through the API.
func (s *system) backups(service string) []map[string]any {
	s.t.Helper()
	status, resp := s.do("GET", "/api/services/"+s.services[service].ID.String()+"/backups", "")
	if status != http.StatusOK {
		s.t.Fatalf("list backups: %d %v", status, resp)
	}
	var out []map[string]any
	for _, b := range resp["backups"].([]any) {
		out = append(out, b.(map[string]any))
	}
	return out
}

// setPlan changes a service's plan in the database, as a finished plan
// change would.
func (s *system) setPlan(service string, plan jobs.Plan) {
	s.t.Helper()
	b, _ := json.Marshal(plan)
	if err := s.q.SetServicePlan(context.Background(), queries.SetServicePlanParams{ID: s.services[service].ID, Plan: b}); err != nil {
		s.t.Fatal(err)
	}
}

// runJob posts body to path, expects 202 and waits for the job to succeed.
func (s *system) runJob(method, path, body string) map[string]any {
	s.t.Helper()
	status, resp := s.do(method, path, body)
	if status != http.StatusAccepted {
		s.t.Fatalf("%s %s: %d %v", method, path, status, resp)
	}
	job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second)
	if job["status"] != "succeeded" {
		s.t.Fatalf("%s %s: job ended %s: %v", method, path, job["status"], job["error"])
	}
	return job
}

func TestUpgradeOfASuspendedServiceLeavesItsVMOff(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := "/api/services/" + s.services["web-1"].ID.String()
	s.runJob("POST", svc+"/action", `{"action":"suspend"}`)
	if status, resp := s.do("POST", svc+"/upgrade", `{"cores":4}`); status != http.StatusConflict || resp["errorKey"] != "service_suspended" {
		t.Errorf("upgrade of a suspended service: %d %v, want 409 service_suspended", status, resp)
	}
	// One accepted as the suspension ended (recorded before it, run after).
	web1 := s.services["web-1"]
	row, _, err := s.jobs.Insert(context.Background(), jobs.ResizeArgs{ServiceID: web1.ID, Plan: jobs.Plan{Cores: 4, MemoryMB: 2048, DiskGB: 40}, Reason: "upgrade"},
		jobs.Request{TeamID: web1.TeamID, ServiceID: web1.ID, RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	job := s.waitJob(row.ID.String(), 30*time.Second)
	if job["status"] != "succeeded" {
		t.Fatalf("resize ended %s: %v", job["status"], job["error"])
	}
	if vm := s.vm("web-1"); vm.Cores != 4 || vm.Status == "running" && !vm.Paused {
		t.Errorf("VM after the upgrade of a suspended service: %d cores, %s/%s; want 4 cores and not running", vm.Cores, vm.Status, map[bool]string{true: "paused"}[vm.Paused])
	}
	if log := strings.Join(s.jobLog(job["id"].(string)), "\n"); !strings.Contains(log, "its VM stays off until it is resumed") {
		t.Errorf("job log %q does not say why the VM was not started", log)
	}
}

func TestBackupsRotateRestoreAndDelete(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := "/api/services/" + s.services["web-1"].ID.String()
	if n := len(s.backups("web-1")); n != 2 {
		t.Fatalf("web-1 starts with %d backups, want the 2 the simulator seeds", n)
	}
	s.setPlan("web-1", jobs.Plan{Cores: 2, MemoryMB: 2048, DiskGB: 40, BackupLimit: 2})
	s.runJob("POST", svc+"/backups", `{"note":"before the upgrade"}`)
	backups := s.backups("web-1")
	if len(backups) != 2 || !strings.Contains(backups[1]["note"].(string), "before the upgrade") {
		t.Fatalf("after a backup past the limit: %v; want the oldest rotated out and the new one last", backups)
	}
	newest := backups[1]["id"].(string)
	s.runJob("POST", svc+"/backups/"+newest, "")
	if n := s.sim.CountTasks("qmrestore", 100); n != 1 {
		t.Errorf("restored %d times, want once", n)
	}
	if vm := s.vm("web-1"); vm.Status != "running" {
		t.Errorf("VM is %s after the restore, want running", vm.Status)
	}
	s.runJob("DELETE", svc+"/backups/"+newest, "")
	if backups := s.backups("web-1"); len(backups) != 1 || backups[0]["id"] == newest {
		t.Errorf("after deleting %s: %v", newest, backups)
	}

	s.setPlan("web-1", jobs.Plan{Cores: 2, MemoryMB: 2048, DiskGB: 40, BackupLimit: 1, BackupPolicy: "refuse"})
	if status, resp := s.do("POST", svc+"/backups", ""); status != http.StatusConflict || resp["errorKey"] != "backup_limit_reached" {
		t.Errorf("backup past a refusing limit: %d %v, want 409 backup_limit_reached", status, resp)
	}
	if status, _ := s.do("POST", svc+"/backups/vzdump-qemu-100-2020_01_01-00_00_00.vma.zst", ""); status != http.StatusNotFound {
		t.Errorf("restore of an unknown backup: %d, want 404", status)
	}
	if status, _ := s.do("DELETE", svc+"/backups/vzdump-qemu-101-2020_01_01-00_00_00.vma.zst", ""); status != http.StatusNotFound {
		t.Errorf("delete of another VM's backup: %d, want 404", status)
	}
}

func TestBackupsOfOneNodeRunOneAtATime(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 300 * time.Millisecond})
	var ids []string
	for _, name := range []string{"web-1", "db-1"} { // both on pve1
		status, resp := s.do("POST", "/api/services/"+s.services[name].ID.String()+"/backups", "")
		if status != http.StatusAccepted {
			t.Fatalf("backup %s: %d %v", name, status, resp)
		}
		ids = append(ids, resp["job"].(map[string]any)["id"].(string))
	}
	for _, id := range ids {
		if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
			t.Fatalf("backup job ended %s: %v", job["status"], job["error"])
		}
	}
	var spans [][2]time.Time
	for _, c := range s.sim.Calls() {
		if c.Op == "vzdump" {
			spans = append(spans, [2]time.Time{c.Time, c.Time.Add(300 * time.Millisecond)})
		}
	}
	if len(spans) != 2 {
		t.Fatalf("%d vzdump calls, want 2", len(spans))
	}
	if spans[1][0].Before(spans[0][1]) {
		t.Errorf("the second backup started %s after the first, while it was still running", spans[1][0].Sub(spans[0][0]))
	}
}

func TestRescueBootsTheISOAndShowsThePasswordOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := "/api/services/" + s.services["web-1"].ID.String()
	job := s.runJob("POST", svc+"/rescue", "")
	vm := s.vm("web-1")
	if vm.Status != "running" || !strings.HasPrefix(vm.Config["ide2"], "local:iso/rescue.iso") || !strings.HasPrefix(vm.Config["boot"], "order=ide2") {
		t.Errorf("VM in rescue: %s, ide2 %q, boot %q", vm.Status, vm.Config["ide2"], vm.Config["boot"])
	}
	// The read that saw the job succeed was the first; it got the password.
	id := job["id"].(string)
	secrets, _ := job["secrets"].(map[string]any)
	password, _ := secrets["password"].(string)
	if len(password) < 16 {
		t.Fatalf("first read of the finished job: secrets %v, want a generated password", job["secrets"])
	}
	var row string
	if err := s.db.QueryRow(context.Background(), "SELECT checkpoint::text || coalesce(result::text, '') FROM jobs WHERE id = $1", id).Scan(&row); err != nil || strings.Contains(row, password) {
		t.Errorf("the password is in the job's checkpoint or result (%v)", err)
	}
	if again := s.job(id); again["secrets"] != nil {
		t.Errorf("second read shows secrets %v; want them shown once", again["secrets"])
	}
	var sealed *string
	if err := s.db.QueryRow(context.Background(), "SELECT encode(sealed_result, 'escape') FROM jobs WHERE id = $1", id).Scan(&sealed); err != nil || sealed != nil {
		t.Errorf("sealed result after it was shown: %v, %v; want NULL", sealed, err)
	}
	if n := s.sim.CountTasks("qmshutdown", 100); n != 1 {
		t.Errorf("rebooted with %d shutdowns, want 1", n)
	}

	s.runJob("DELETE", svc+"/rescue", "")
	vm = s.vm("web-1")
	if vm.Config["ide2"] != "" || vm.Config["boot"] != "order=scsi0" || vm.Status != "running" {
		t.Errorf("VM out of rescue: ide2 %q, boot %q, %s", vm.Config["ide2"], vm.Config["boot"], vm.Status)
	}
}

func TestProvisionCancelledAfterItsCloneStartedIsCarriedThrough(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: time.Second})
	svc, id := s.provision(`{"name":"vps","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":20},"templateId":9000}`)
	jobtest.Eventually(t, 20*time.Second, "the clone to start", func() bool { return s.sim.CountTasks("qmclone", 0) == 1 })
	status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", "")
	if status != http.StatusConflict || resp["errorKey"] != "job_committed" {
		t.Fatalf("cancel: %d %v; want 409 job_committed", status, resp)
	}
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("job %s: %v; want it carried through", job["status"], job["error"])
	}
	if got := s.serviceByID(svc); got["status"] != "active" || got["powerState"] != "running" {
		t.Errorf("service %v/%v, want active/running", got["status"], got["powerState"])
	}
}

func TestConcurrentProvisionsGetDistinctVMIDs(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	const n = 8
	var ids []string
	for i := range n {
		_, id := s.provision(fmt.Sprintf(`{"name":"vps-%d","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":10},"templateId":9000}`, i))
		ids = append(ids, id)
	}
	vmids := map[float64]bool{}
	for _, id := range ids {
		job := s.waitJob(id, 60*time.Second)
		if job["status"] != "succeeded" {
			t.Fatalf("provision ended %s: %v", job["status"], job["error"])
		}
		vmids[job["result"].(map[string]any)["vmid"].(float64)] = true
	}
	if len(vmids) != n || s.sim.CountCalls("clone", "") != n {
		t.Errorf("%d distinct VMIDs and %d clone calls for %d provisions; want one each", len(vmids), s.sim.CountCalls("clone", ""), n)
	}
}

func TestProvisionWaitsForTheGuestAgent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		noAgent bool
		want    string
	}{
		{"agent in the image answers", false, "the guest agent answered"},
		{"image without an agent ends the wait after the timeout", true, "the guest agent did not answer within 500ms; the VM runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{env: map[string]string{"PROXMOX_AGENT_TIMEOUT": "500ms"}})
			tmpl, _ := s.sim.VM("pve1", 9000)
			tmpl.NoAgent = tc.noAgent
			s.sim.AddVM(tmpl)
			_, jobID := s.provision(`{"name":"vps-a","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":10},"templateId":9000}`)
			if job := s.waitJob(jobID, 30*time.Second); job["status"] != "succeeded" {
				t.Fatalf("provision ended %s: %v", job["status"], job["error"])
			}
			events, err := s.q.ListJobEvents(context.Background(), queries.ListJobEventsParams{JobID: uuid.MustParse(jobID)})
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, e := range events {
				if e.Type == "log" {
					lines = append(lines, e.Message)
				}
			}
			if !slices.Contains(lines, tc.want) {
				t.Errorf("job log %q; want %q", lines, tc.want)
			}
			if s.sim.CountCalls("agent.ping", "") == 0 {
				t.Error("the guest agent was never asked")
			}
		})
	}
}
