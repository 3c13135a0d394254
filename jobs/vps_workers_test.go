package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/worktest"
	"github.com/hostfleet/provisiond/queries"
)

// vpsFixture is a harness with the Proxmox workers over a simulated
// cluster, and a service whose VM is there.
type vpsFixture struct {
	h   *worktest.Harness
	pve *sim.Server
	px  *proxmox.Client
	svc queries.Service
	ref proxmox.VMRef
}

const testTemplate = 9000

// newVPSFixture makes the service (with plan, and the VM unless vm.VMID is
// 0) and the workers.
func newVPSFixture(t *testing.T, vm sim.VM, plan jobs.Plan) *vpsFixture {
	t.Helper()
	h := worktest.New(t)
	pve := sim.New(sim.Config{TokenID: "root@pam!t", TokenSecret: "s", Password: "pw", TaskDuration: 5 * time.Millisecond, Seed: 1})
	pve.AddVM(sim.VM{Node: "pve1", VMID: testTemplate, Name: "debian-12", Template: true, DiskGB: 10,
		Config: map[string]string{"ciuser": "debian", "ipconfig0": "ip=dhcp"}})
	srv := httptest.NewServer(pve)
	t.Cleanup(func() { srv.Close(); pve.Close() })
	px, err := proxmox.New(proxmox.Config{URL: srv.URL + "/api2/json", TokenID: "root@pam!t", TokenSecret: "s",
		PollInterval: 5 * time.Millisecond, ConsoleUser: "root@pam", ConsolePassword: "pw"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := json.Marshal(plan)
	ref := proxmox.VMRef{Node: "pve1", VMID: vm.VMID}
	r, _ := json.Marshal(ref)
	if vm.VMID == 0 {
		r = []byte(`{}`)
	}
	svc := h.Service(proxmox.Provider, p, r)
	if vm.VMID != 0 {
		vm.Node, vm.Tags = "pve1", append(vm.Tags, jobs.VMTag(svc.ID))
		pve.AddVM(vm)
		if _, err := queries.New(h.Pool).ReserveVMID(context.Background(), queries.ReserveVMIDParams{Vmid: int32(vm.VMID), ServiceID: svc.ID}); err != nil {
			t.Fatal(err)
		}
	}
	vps := &jobs.VPSWorkers{Queries: h.Queries, Proxmox: px, ShutdownTimeout: time.Second, AgentTimeout: time.Second, ConsoleTTL: time.Minute}
	providers := jobs.NewRegistry(vps)
	vps.AddWorkers(h.Workers)
	jobs.AddWorker(h.Workers, &jobs.PowerWorker{Queries: h.Queries, Providers: providers})
	jobs.AddWorker(h.Workers, &jobs.TerminationWorker{Queries: h.Queries, Providers: providers})
	return &vpsFixture{h: h, pve: pve, px: px, svc: svc, ref: ref}
}

func (f *vpsFixture) vm(t *testing.T) (sim.VM, bool) {
	t.Helper()
	return f.pve.VM(f.ref.Node, f.ref.VMID)
}

func (f *vpsFixture) service(t *testing.T) queries.Service {
	t.Helper()
	svc, err := queries.New(f.h.Pool).GetService(context.Background(), f.svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (f *vpsFixture) backups(t *testing.T) []jobs.Backup {
	t.Helper()
	b, err := jobs.ListBackups(context.Background(), f.px, f.ref, "local")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testPlan = jobs.Plan{Cores: 2, MemoryMB: 2048, DiskGB: 20}

// TestVPSWorkers runs one job of every Proxmox kind to its end against the
// simulated cluster and checks what it did there.
func TestVPSWorkers(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		vm   sim.VM
		plan jobs.Plan
		// prepare readies the fixture; it returns the job to run.
		job func(t *testing.T, f *vpsFixture) queries.Job
		// check looks at the cluster and the service afterwards.
		check func(t *testing.T, f *vpsFixture, job queries.Job)
	}{
		{
			name: "service.power start boots a stopped VM once",
			vm:   sim.VM{VMID: 101, Status: "stopped"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "start"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if vm, _ := f.vm(t); vm.Status != "running" || f.pve.CountTasks("qmstart", f.ref.VMID) != 1 {
					t.Errorf("VM %s after %d start tasks; want running after one", vm.Status, f.pve.CountTasks("qmstart", f.ref.VMID))
				}
				if svc := f.service(t); svc.PowerState != "running" {
					t.Errorf("recorded power state %s, want running", svc.PowerState)
				}
			},
		},
		{
			name: "service.power restart shuts the guest down and boots it",
			vm:   sim.VM{VMID: 101, Status: "running"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "restart"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if vm, _ := f.vm(t); vm.Status != "running" || f.pve.CountTasks("qmshutdown", f.ref.VMID) != 1 || f.pve.CountTasks("qmstart", f.ref.VMID) != 1 {
					t.Errorf("VM %s after %d shutdowns and %d starts; want running after one of each", vm.Status,
						f.pve.CountTasks("qmshutdown", f.ref.VMID), f.pve.CountTasks("qmstart", f.ref.VMID))
				}
			},
		},
		{
			name: "service.power suspend pauses the VM and suspends the service",
			vm:   sim.VM{VMID: 101, Status: "running"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "suspend"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				svc := f.service(t)
				if vm, _ := f.vm(t); !vm.Paused || svc.Status != "suspended" || !slices.Contains(svc.Suspensions, jobs.SuspendedForPayment) {
					t.Errorf("VM paused %v, service %s suspended for %v; want paused, suspended for payment", vm.Paused, svc.Status, svc.Suspensions)
				}
			},
		},
		{
			name: "vps.resize gives the VM the new plan",
			vm:   sim.VM{VMID: 101, Status: "running", Cores: 2, MemoryMB: 2048, DiskGB: 20},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.ResizeArgs{ServiceID: f.svc.ID, Plan: jobs.Plan{Cores: 4, MemoryMB: 4096, DiskGB: 40}, Reason: "upgrade"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				vm, _ := f.vm(t)
				plan, _ := jobs.ServicePlan(ptr(f.service(t)))
				if vm.Cores != 4 || vm.MemoryMB != 4096 || vm.DiskGB != 40 || plan.Cores != 4 {
					t.Errorf("VM %d cores, %d MB, %d GB, plan %+v; want 4, 4096, 40 and the plan recorded", vm.Cores, vm.MemoryMB, vm.DiskGB, plan)
				}
			},
		},
		{
			name: "vps.backup makes one archive",
			vm:   sim.VM{VMID: 101, Status: "running"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.BackupArgs{ServiceID: f.svc.ID, Note: "before upgrade"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if b := f.backups(t); len(b) != 1 || f.pve.CountTasks("vzdump", f.ref.VMID) != 1 {
					t.Errorf("%d backups after %d vzdumps; want one of each", len(b), f.pve.CountTasks("vzdump", f.ref.VMID))
				}
			},
		},
		{
			name: "vps.backup.delete removes the archive",
			vm:   sim.VM{VMID: 101, Status: "running", SeedBackups: 1},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.BackupDeleteArgs{ServiceID: f.svc.ID, BackupID: f.backups(t)[0].ID}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if b := f.backups(t); len(b) != 0 {
					t.Errorf("%d backups left, want none", len(b))
				}
			},
		},
		{
			name: "vps.restore brings an archive back and starts the VM",
			vm:   sim.VM{VMID: 101, Status: "running", SeedBackups: 1},
			plan: jobs.Plan{Cores: 1, MemoryMB: 512, DiskGB: 8},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.RestoreArgs{ServiceID: f.svc.ID, BackupID: f.backups(t)[0].ID}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if vm, _ := f.vm(t); vm.Status != "running" || f.pve.CountTasks("qmrestore", f.ref.VMID) != 1 || !slices.Contains(vm.Tags, jobs.VMTag(f.svc.ID)) {
					t.Errorf("VM %s after %d restores, tags %v; want running after one, with its tag", vm.Status, f.pve.CountTasks("qmrestore", f.ref.VMID), vm.Tags)
				}
			},
		},
		{
			name: "vps.reinstall makes the VM anew from the template",
			vm:   sim.VM{VMID: 101, Status: "running", Name: "old"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.ReinstallArgs{ServiceID: f.svc.ID, Install: jobs.Install{TemplateID: testTemplate, Hostname: "fresh"}}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				vm, ok := f.vm(t)
				if !ok || vm.Status != "running" || f.pve.CountTasks("qmclone", testTemplate) != 1 || !slices.Contains(vm.Tags, jobs.VMTag(f.svc.ID)) {
					t.Errorf("VM %+v after %d clones; want a running clone with the service's tag after one", vm, f.pve.CountTasks("qmclone", testTemplate))
				}
			},
		},
		{
			name: "vps.rescue boots the rescue system and hands out its password",
			vm:   sim.VM{VMID: 101, Status: "running"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.RescueArgs{ServiceID: f.svc.ID, Enable: true}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if vm, _ := f.vm(t); vm.Status != "running" || len(job.SealedResult) == 0 {
					t.Errorf("VM %s, sealed result %d bytes; want running with a sealed password", vm.Status, len(job.SealedResult))
				}
			},
		},
		{
			name: "vps.console opens a session for the browser",
			vm:   sim.VM{VMID: 101, Status: "running"},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.ConsoleArgs{ServiceID: f.svc.ID}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if len(job.Result) == 0 || len(job.SealedResult) == 0 {
					t.Errorf("result %s, sealed %d bytes; want the session and its sealed token", job.Result, len(job.SealedResult))
				}
			},
		},
		{
			name: "vps.release-ip unconfigures the address and drops it from the plan",
			vm:   sim.VM{VMID: 101, Status: "running", Config: map[string]string{"ipconfig1": "ip=203.0.113.7/24"}},
			plan: jobs.Plan{Cores: 2, MemoryMB: 2048, DiskGB: 20, AdditionalIPs: []string{"203.0.113.7"}},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return f.h.Insert(jobs.ReleaseIPArgs{ServiceID: f.svc.ID, IP: "203.0.113.7"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				vm, _ := f.vm(t)
				plan, _ := jobs.ServicePlan(ptr(f.service(t)))
				if _, carried := vm.Config["ipconfig1"]; carried || len(plan.AdditionalIPs) != 0 {
					t.Errorf("ipconfig1 %q, plan's IPs %v; want both gone", vm.Config["ipconfig1"], plan.AdditionalIPs)
				}
			},
		},
		{
			name: "vps.provision clones, tags and starts the service's VM",
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				if err := queries.New(f.h.Pool).SetServiceStatus(context.Background(), queries.SetServiceStatusParams{ID: f.svc.ID, Status: "pending"}); err != nil {
					t.Fatal(err)
				}
				return f.h.Insert(jobs.ProvisionArgs{ServiceID: f.svc.ID, Install: jobs.Install{TemplateID: testTemplate, Hostname: "new"}}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				svc := f.service(t)
				ref, err := jobs.ProxmoxRef(&svc)
				vm, ok := f.pve.VM(ref.Node, ref.VMID)
				if err != nil || !ok || svc.Status != "active" || vm.Status != "running" || !slices.Contains(vm.Tags, jobs.VMTag(svc.ID)) {
					t.Errorf("service %s at %+v, VM %+v; want active on a running VM with its tag", svc.Status, ref, vm)
				}
			},
		},
		{
			name: "vps.repair makes a missing VM again from the template",
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				q := queries.New(f.h.Pool)
				if _, err := q.FlagServiceNeedsRepair(context.Background(), queries.FlagServiceNeedsRepairParams{ID: f.svc.ID, RepairReason: "VM gone"}); err != nil {
					t.Fatal(err)
				}
				return f.h.Insert(jobs.RepairArgs{ServiceID: f.svc.ID, TemplateID: testTemplate}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				svc := f.service(t)
				ref, err := jobs.ProxmoxRef(&svc)
				vm, ok := f.pve.VM(ref.Node, ref.VMID)
				if err != nil || !ok || svc.Status != "active" || !slices.Contains(vm.Tags, jobs.VMTag(svc.ID)) {
					t.Errorf("service %s at %+v, VM %+v; want active on a VM with its tag", svc.Status, ref, vm)
				}
			},
		},
		{
			name: "service.terminate destroys the VM and its backups",
			vm:   sim.VM{VMID: 101, Status: "running", SeedBackups: 1},
			job: func(t *testing.T, f *vpsFixture) queries.Job {
				return terminationJob(t, f.h, f.svc)
			},
			check: func(t *testing.T, f *vpsFixture, job queries.Job) {
				if _, ok := f.vm(t); ok || len(f.backups(t)) != 0 || f.service(t).Status != "terminated" {
					t.Errorf("VM still there %v, %d backups, service %s; want all gone and terminated", ok, len(f.backups(t)), f.service(t).Status)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := tt.plan
			if plan.Cores == 0 {
				plan = testPlan
			}
			f := newVPSFixture(t, tt.vm, plan)
			job := f.h.Run(ctx, tt.job(t, f), 5)
			if job.Status != jobs.StatusSucceeded {
				t.Fatalf("job %s ended %s: %s", job.Kind, job.Status, job.Error)
			}
			tt.check(t, f, job)
		})
	}
}

// terminationJob cancels the service as the API does and returns its
// termination job, due now.
func terminationJob(t *testing.T, h *worktest.Harness, svc queries.Service) queries.Job {
	t.Helper()
	id := jobs.TerminationJobID(svc.ID, 1)
	now, when := time.Now(), "immediately"
	if _, err := queries.New(h.Pool).ScheduleTermination(context.Background(), queries.ScheduleTerminationParams{
		ID: svc.ID, CancelWhen: &when, TerminateAt: &now, JobID: uuid.NullUUID{UUID: id, Valid: true}}); err != nil {
		t.Fatal(err)
	}
	return h.Insert(jobs.TerminationArgs{ServiceID: svc.ID, Generation: 1}, svc.ID, jobs.Request{JobID: id})
}

func ptr[T any](v T) *T { return &v }

// TestVPSWorkersSurviveAFailedWriteAnywhere fails each database statement
// of a job's first attempt in turn, as a crash or a lost connection
// between two writes would, and runs the attempts a redelivery would: the
// job must still succeed, with its provider action run once.
func TestVPSWorkersSurviveAFailedWriteAnywhere(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		vm   sim.VM
		job  func(t *testing.T, f *vpsFixture) queries.Job
		// task is the provider task the job runs once.
		task string
	}{
		{"service.power start", sim.VM{VMID: 101, Status: "stopped"}, func(t *testing.T, f *vpsFixture) queries.Job {
			return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "start"}, f.svc.ID, jobs.Request{})
		}, "qmstart"},
		{"vps.backup", sim.VM{VMID: 101, Status: "running"}, func(t *testing.T, f *vpsFixture) queries.Job {
			return f.h.Insert(jobs.BackupArgs{ServiceID: f.svc.ID}, f.svc.ID, jobs.Request{})
		}, "vzdump"},
		{"vps.restore", sim.VM{VMID: 101, Status: "running", SeedBackups: 1}, func(t *testing.T, f *vpsFixture) queries.Job {
			return f.h.Insert(jobs.RestoreArgs{ServiceID: f.svc.ID, BackupID: f.backups(t)[0].ID}, f.svc.ID, jobs.Request{})
		}, "qmrestore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newVPSFixture(t, tt.vm, testPlan)
			f.h.FailAt(0)
			if job := f.h.Run(ctx, tt.job(t, f), 1); job.Status != jobs.StatusSucceeded {
				t.Fatalf("without failures the job ended %s: %s", job.Status, job.Error)
			}
			n := f.h.Statements()
			t.Logf("the first attempt runs %d statements; failing each in turn", n)
			for failAt := 1; failAt <= n; failAt++ {
				f := newVPSFixture(t, tt.vm, testPlan)
				job := tt.job(t, f)
				f.h.FailAt(failAt)
				job = f.h.Run(ctx, job, 10)
				if job.Status != jobs.StatusSucceeded {
					t.Errorf("statement %d of %d failed: the job ended %s: %s", failAt, n, job.Status, job.Error)
				}
				if got := f.pve.CountTasks(tt.task, f.ref.VMID); got != 1 {
					t.Errorf("statement %d of %d failed: %d %s tasks, want 1", failAt, n, got, tt.task)
				}
			}
		})
	}
}

// TestAJobMovedLaterWaitsForItsNewTime delivers a release moved to a later
// period end at its old time, as its old task comes when the move could
// not replace it (Redis was away): the job is not started and asks asynq
// to come back at the new time.
func TestAJobMovedLaterWaitsForItsNewTime(t *testing.T) {
	f := newVPSFixture(t, sim.VM{VMID: 101, Status: "running", Config: map[string]string{"ipconfig1": "ip=203.0.113.7/24"}},
		jobs.Plan{Cores: 2, MemoryMB: 2048, DiskGB: 20, AdditionalIPs: []string{"203.0.113.7"}})
	later := time.Now().Add(2 * time.Hour)
	job := f.h.Insert(jobs.ReleaseIPArgs{ServiceID: f.svc.ID, IP: "203.0.113.7"}, f.svc.ID, jobs.Request{RunAt: later})
	after, err := f.h.Attempt(context.Background(), job)
	var snooze *jobs.SnoozeError
	if !errors.As(err, &snooze) || snooze.After < time.Hour {
		t.Fatalf("the early delivery returned %v; want a snooze until the new time", err)
	}
	if after.Status != jobs.StatusScheduled || after.Attempts != 0 {
		t.Errorf("job %s after %d attempts; want still scheduled, never started", after.Status, after.Attempts)
	}
	if vm, _ := f.vm(t); vm.Config["ipconfig1"] == "" {
		t.Error("the address was released before its time")
	}
}

// TestAWithdrawalsResumeWaitsForTheCancellationsSuspension runs the
// resumption a withdrawal queued before the cancellation's suspension has
// ended: it waits for the suspension, then resumes, and the service ends
// active with its VM running.
func TestAWithdrawalsResumeWaitsForTheCancellationsSuspension(t *testing.T) {
	ctx := context.Background()
	f := newVPSFixture(t, sim.VM{VMID: 101, Status: "running"}, testPlan)
	q := queries.New(f.h.Pool)
	insert := func(action string) queries.Job {
		args, id := jobs.CancellationPower(f.svc, 1, action)
		return f.h.Insert(args, f.svc.ID, jobs.Request{JobID: id})
	}
	suspend := terminationAndSuspension(t, f.h, f.svc, insert)
	if _, err := q.ClearCancellation(ctx, f.svc.ID); err != nil {
		t.Fatal(err)
	}
	resume := insert("resume")
	if _, err := f.h.Attempt(ctx, resume); err == nil || !strings.Contains(err.Error(), suspend.ID.String()) {
		t.Fatalf("the resume ran before the suspension ended (err %v); want it waiting for job %s", err, suspend.ID)
	}
	for _, j := range []queries.Job{suspend, resume} {
		if j = f.h.Run(ctx, j, 5); j.Status != jobs.StatusSucceeded {
			t.Fatalf("job %s ended %s: %s", j.ID, j.Status, j.Error)
		}
	}
	svc := f.service(t)
	if vm, _ := f.vm(t); svc.Status != "active" || len(svc.Suspensions) != 0 || vm.Paused {
		t.Errorf("service %s suspended for %v, VM paused %v; want active and running", svc.Status, svc.Suspensions, vm.Paused)
	}
}

// terminationAndSuspension cancels the service immediately as the API
// does, with insert making its suspension job, which it returns.
func terminationAndSuspension(t *testing.T, h *worktest.Harness, svc queries.Service, insert func(string) queries.Job) queries.Job {
	t.Helper()
	terminationJob(t, h, svc)
	time.Sleep(5 * time.Millisecond) // rows told apart by their creation time
	suspend := insert("suspend")
	time.Sleep(5 * time.Millisecond)
	return suspend
}
