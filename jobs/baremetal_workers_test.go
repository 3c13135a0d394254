package jobs_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/adapters/tenantos"
	tenantossim "github.com/hostfleet/provisiond/adapters/tenantos/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/jobs/worktest"
	"github.com/hostfleet/provisiond/queries"
)

// bareMetalFixture is a harness with the Tenantos workers over a simulated
// panel with the demo servers (1 and 3 free "For Rent"), and a pending
// bare-metal service.
type bareMetalFixture struct {
	h     *worktest.Harness
	panel *tenantossim.Server
	w     *jobs.BareMetalWorkers
	svc   queries.Service
}

const testRootPassword = "root-pw-Xy7#kq2"

var testBareMetalInstall = jobs.BareMetalInstall{ProfileID: 1, Hostname: "bm1.example.net"}

func newBareMetalFixture(t *testing.T, install time.Duration, plan jobs.BareMetalPlan) *bareMetalFixture {
	t.Helper()
	h := worktest.New(t)
	panel := tenantossim.New(tenantossim.Config{APIKeys: []string{"k"}, TaskDuration: 5 * time.Millisecond, InstallDuration: install, Seed: 1})
	for _, m := range tenantossim.DemoServers() {
		panel.AddServer(m)
	}
	srv := httptest.NewServer(panel)
	t.Cleanup(func() { srv.Close(); panel.Close() })
	c, err := tenantos.New(tenantos.Config{URL: srv.URL, APIKey: "k", RequestTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(plan)
	svc := h.Service(tenantos.Provider, b, []byte(`{}`))
	if err := queries.New(h.Pool).SetServiceStatus(context.Background(), queries.SetServiceStatusParams{ID: svc.ID, Status: "pending"}); err != nil {
		t.Fatal(err)
	}
	w := &jobs.BareMetalWorkers{Queries: h.Queries, Tenantos: c, PollInterval: 5 * time.Millisecond, WipeProfile: 20}
	providers := jobs.NewRegistry(w)
	w.AddWorkers(h.Workers)
	jobs.AddWorker(h.Workers, &jobs.PowerWorker{Queries: h.Queries, Providers: providers})
	jobs.AddWorker(h.Workers, &jobs.TerminationWorker{Queries: h.Queries, Providers: providers})
	svc.Status = "pending"
	return &bareMetalFixture{h: h, panel: panel, w: w, svc: svc}
}

func (f *bareMetalFixture) provisionJob() queries.Job {
	return f.h.Insert(jobs.BareMetalProvisionArgs{ServiceID: f.svc.ID, Install: testBareMetalInstall}, f.svc.ID,
		jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
}

// provision runs the service's provision job to its end.
func (f *bareMetalFixture) provision(t *testing.T) {
	t.Helper()
	if job := f.h.Run(context.Background(), f.provisionJob(), 5); job.Status != jobs.StatusSucceeded {
		t.Fatalf("provision ended %s: %s", job.Status, job.Error)
	}
	f.svc = f.service(t)
}

func (f *bareMetalFixture) service(t *testing.T) queries.Service {
	t.Helper()
	svc, err := queries.New(f.h.Pool).GetService(context.Background(), f.svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// server is the demo server id on the panel.
func (f *bareMetalFixture) server(t *testing.T, id int) tenantossim.Machine {
	t.Helper()
	m, ok := f.panel.Server(id)
	if !ok {
		t.Fatalf("server %d is gone", id)
	}
	return m
}

func marked(m tenantossim.Machine, svc uuid.UUID) bool {
	return slices.Contains(m.Tags, "provisiond-service:"+svc.String())
}

func inPool(m tenantossim.Machine) bool {
	return slices.Contains(m.Tags, "For Rent") && !slices.ContainsFunc(m.Tags, func(t string) bool { return strings.HasPrefix(t, "provisiond-service:") })
}

func TestBareMetalProvisionTakesTheFirstFreeServerAndInstallsIt(t *testing.T) {
	t.Parallel()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{User: 7, IPs: []jobs.BareMetalIP{{IP: "10.10.10.90", CIDR: 24, Gateway: "10.10.10.1"}}})
	f.provision(t)
	if f.svc.Status != "active" {
		t.Errorf("service %s after provision, want active", f.svc.Status)
	}
	ref, err := jobs.TenantosRef(&f.svc)
	if err != nil || ref.ServerID != 1 {
		t.Fatalf("service ref %s: want server 1", f.svc.ProviderRef)
	}
	m := f.server(t, 1)
	if !marked(m, f.svc.ID) || slices.Contains(m.Tags, "For Rent") || m.UserID != 7 || m.OS != "Debian 12" || m.Hostname != "bm1.example.net" {
		t.Errorf("server 1 after provision: %+v", m)
	}
	if !slices.ContainsFunc(m.IPs, func(a tenantossim.IPAssignment) bool { return a.IP == "10.10.10.90" }) {
		t.Errorf("server 1 lacks the plan's address: %+v", m.IPs)
	}
	if n := f.panel.CountInstalls(1); n != 1 {
		t.Errorf("%d installs on server 1, want 1", n)
	}
}

func TestBareMetalProvisionsRacingForThePoolTakeDifferentServers(t *testing.T) {
	t.Parallel()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	other := f.h.Service(tenantos.Provider, []byte(`{}`), []byte(`{}`))
	if err := queries.New(f.h.Pool).SetServiceStatus(context.Background(), queries.SetServiceStatusParams{ID: other.ID, Status: "pending"}); err != nil {
		t.Fatal(err)
	}
	first := f.provisionJob()
	second := f.h.Insert(jobs.BareMetalProvisionArgs{ServiceID: other.ID, Install: testBareMetalInstall}, other.ID,
		jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
	done := make(chan queries.Job, 2)
	for _, j := range []queries.Job{first, second} {
		go func() { done <- f.h.Run(context.Background(), j, 5) }()
	}
	for range 2 {
		if j := <-done; j.Status != jobs.StatusSucceeded {
			t.Fatalf("provision %s ended %s: %s", j.ID, j.Status, j.Error)
		}
	}
	a := f.service(t)
	b, err := queries.New(f.h.Pool).GetService(context.Background(), other.ID)
	if err != nil {
		t.Fatal(err)
	}
	ra, _ := jobs.TenantosRef(&a)
	rb, _ := jobs.TenantosRef(&b)
	if ra.ServerID == rb.ServerID || ra.ServerID == 0 || rb.ServerID == 0 {
		t.Errorf("the services hold servers %d and %d, want two different ones", ra.ServerID, rb.ServerID)
	}
}

func TestBareMetalJobs(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		job   func(f *bareMetalFixture) queries.Job
		check func(t *testing.T, f *bareMetalFixture, job queries.Job)
	}{
		{"reinstall installs the profile once",
			func(f *bareMetalFixture) queries.Job {
				return f.h.Insert(jobs.BareMetalReinstallArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 2, Hostname: "fresh"}},
					f.svc.ID, jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
			},
			func(t *testing.T, f *bareMetalFixture, job queries.Job) {
				if m := f.server(t, 1); m.OS != "Ubuntu 24.04" || m.Hostname != "fresh" || f.panel.CountInstalls(1) != 2 {
					t.Errorf("server after reinstall: %+v, %d installs", m, f.panel.CountInstalls(1))
				}
			}},
		{"rescue boots the rescue system with a password shown once",
			func(f *bareMetalFixture) queries.Job {
				return f.h.Insert(jobs.BareMetalRescueArgs{ServiceID: f.svc.ID, Enable: true, ProfileID: 10}, f.svc.ID, jobs.Request{})
			},
			func(t *testing.T, f *bareMetalFixture, job queries.Job) {
				if m := f.server(t, 1); !m.Rescue {
					t.Errorf("server not in rescue: %+v", m)
				}
				if len(job.SealedResult) == 0 || strings.Contains(string(job.Result), "password") {
					t.Errorf("rescue job result %s, sealed %d bytes: want the password sealed, not in the result", job.Result, len(job.SealedResult))
				}
			}},
		{"stop powers the server off",
			func(f *bareMetalFixture) queries.Job {
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "stop"}, f.svc.ID, jobs.Request{})
			},
			func(t *testing.T, f *bareMetalFixture, job queries.Job) {
				if m := f.server(t, 1); m.Power != "offline" || f.service(t).PowerState != "stopped" {
					t.Errorf("server %s, service %s after stop", m.Power, f.service(t).PowerState)
				}
			}},
		{"restart cycles the power",
			func(f *bareMetalFixture) queries.Job {
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "restart"}, f.svc.ID, jobs.Request{})
			},
			func(t *testing.T, f *bareMetalFixture, job queries.Job) {
				if n := f.panel.CountCalls("power.setPowerCycle", "1"); n != 1 || f.server(t, 1).Power != "online" {
					t.Errorf("%d power cycles, server %s", n, f.server(t, 1).Power)
				}
			}},
		{"suspend suspends the server for its owner and powers it off",
			func(f *bareMetalFixture) queries.Job {
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "suspend"}, f.svc.ID, jobs.Request{})
			},
			func(t *testing.T, f *bareMetalFixture, job queries.Job) {
				m := f.server(t, 1)
				if len(m.SuspendedUserIDs) == 0 || m.Power != "offline" || f.service(t).Status != "suspended" {
					t.Errorf("server %+v, service %s after suspend", m, f.service(t).Status)
				}
			}},
		{"termination wipes the server and gives it back to the pool",
			func(f *bareMetalFixture) queries.Job { return terminationJob(t, f.h, f.svc) },
			func(t *testing.T, f *bareMetalFixture, job queries.Job) {
				m := f.server(t, 1)
				if !inPool(m) || m.Power != "offline" || m.OS != "" || slices.ContainsFunc(m.IPs, func(a tenantossim.IPAssignment) bool { return a.IP == "10.10.10.90" }) {
					t.Errorf("server after termination: %+v", m)
				}
				if svc := f.service(t); svc.Status != "terminated" {
					t.Errorf("service %s after termination", svc.Status)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{IPs: []jobs.BareMetalIP{{IP: "10.10.10.90", CIDR: 24}}})
			f.provision(t)
			job := f.h.Run(ctx, tt.job(f), 5)
			if job.Status != jobs.StatusSucceeded {
				t.Fatalf("job %s ended %s: %s", job.Kind, job.Status, job.Error)
			}
			tt.check(t, f, job)
		})
	}
}

func TestBareMetalFailedInstallFailsWithTenantosMessageAndNeedsRepair(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	f.provision(t)
	f.panel.Inject(simkit.Fault{Op: "provisioning.startReinstallation", TaskError: "No bootable disk found", Times: 1})
	reinstall := func() queries.Job {
		return f.h.Insert(jobs.BareMetalReinstallArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 3}},
			f.svc.ID, jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
	}
	job := f.h.Run(ctx, reinstall(), 5)
	if job.Status != jobs.StatusFailed || !strings.Contains(job.Error, "No bootable disk found") {
		t.Fatalf("reinstall ended %s: %q; want failed with Tenantos' message", job.Status, job.Error)
	}
	if svc := f.service(t); svc.Status != "needs_repair" || !strings.Contains(svc.RepairReason, "No bootable disk found") {
		t.Fatalf("service %s (%s) after a failed install; want needs_repair", svc.Status, svc.RepairReason)
	}
	f.svc = f.service(t)
	if job := f.h.Run(ctx, reinstall(), 5); job.Status != jobs.StatusSucceeded {
		t.Fatalf("repairing reinstall ended %s: %s", job.Status, job.Error)
	}
	if svc := f.service(t); svc.Status != "active" {
		t.Errorf("service %s after the repairing reinstall, want active", svc.Status)
	}
}

// TestBareMetalInstallStartsOnceWhateverTheAnswer loses or refuses the
// answer to startReinstallation: the next attempt adopts the install the
// lost answer started, or asks again after a refusal that started none.
func TestBareMetalInstallStartsOnceWhateverTheAnswer(t *testing.T) {
	for _, fault := range []simkit.Fault{{Drop: true}, {Status: 503}, {Status: 500, Message: "Server Error"}} {
		t.Run("drop="+strconv.FormatBool(fault.Drop)+" status="+strconv.Itoa(fault.Status), func(t *testing.T) {
			t.Parallel()
			f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
			f.provision(t)
			fault.Op, fault.Times = "provisioning.startReinstallation", 1
			f.panel.Inject(fault)
			job := f.h.Insert(jobs.BareMetalReinstallArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 2}},
				f.svc.ID, jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
			if job = f.h.Run(context.Background(), job, 5); job.Status != jobs.StatusSucceeded {
				t.Fatalf("reinstall ended %s: %s", job.Status, job.Error)
			}
			if n := f.panel.CountInstalls(1); n != 2 {
				t.Errorf("%d installs on the server, want 2 (the provision's and one reinstall)", n)
			}
		})
	}
}

// cancelDuring runs an attempt of job until hung says it is in the step
// the test means, then cancels the job as the API and asynq do (the
// request recorded, the attempt's context cancelled), and runs the
// attempts that follow.
func cancelDuring(t *testing.T, f *bareMetalFixture, job queries.Job, hung func() bool) queries.Job {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.h.Attempt(ctx, job) }()
	jobtest.Eventually(t, 10*time.Second, "the job reaching the step to cancel", hung)
	if _, err := queries.New(f.h.Pool).RequestJobCancel(context.Background(), job.ID); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	f.panel.ClearFaults()
	return f.h.Run(context.Background(), f.h.Job(job.ID), 3)
}

func TestBareMetalProvisionCancelledAtEachStepLeavesThePoolWhole(t *testing.T) {
	tests := []struct {
		step, op string
		want     string
	}{
		{"claim", "servers.getByTags", "no server was taken"},
		{"mark", "servers.update", "was not changed and is free again"},
		{"ips", "ipassignments.add", "given back to the pool"},
		{"install", "provisioning.startReinstallation", "given back to the pool"},
		{"wait", "", "installation stopped at step"},
	}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			t.Parallel()
			f := newBareMetalFixture(t, 5*time.Second, jobs.BareMetalPlan{IPs: []jobs.BareMetalIP{{IP: "10.10.10.91", CIDR: 24}}})
			// The step's call hangs; the wait is caught with its install running.
			hung := func() bool { return f.panel.CountCalls(tt.op, "") > 0 }
			if tt.op != "" {
				f.panel.Inject(simkit.Fault{Op: tt.op, Hang: true})
			} else {
				hung = func() bool { m, _ := f.panel.Server(1); return f.panel.CountInstalls(1) == 1 && m.Power == "online" }
			}
			job := cancelDuring(t, f, f.provisionJob(), hung)
			if job.Status != jobs.StatusCancelled || !strings.Contains(job.Error, tt.want) {
				t.Fatalf("provision ended %s: %q; want cancelled saying %q", job.Status, job.Error, tt.want)
			}
			if m := f.server(t, 1); !inPool(m) || len(m.IPs) != 1 {
				t.Errorf("server 1 after the cancelled provision: %+v; want it back in the pool with its own address only", m)
			}
			if svc := f.service(t); string(svc.ProviderRef) != "{}" {
				t.Errorf("service ref %s after the cancelled provision; want the claim released", svc.ProviderRef)
			}
		})
	}
}

func TestBareMetalReinstallCancelledDuringTheInstallStopsItAndNeedsRepair(t *testing.T) {
	t.Parallel()
	f := newBareMetalFixture(t, time.Second, jobs.BareMetalPlan{})
	f.provision(t)
	job := f.h.Insert(jobs.BareMetalReinstallArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 2}},
		f.svc.ID, jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
	job = cancelDuring(t, f, job, func() bool { return f.h.Job(job.ID).Step == "wait" })
	if job.Status != jobs.StatusCancelled || !strings.Contains(job.Error, "installation was stopped at step") {
		t.Fatalf("reinstall ended %s: %q; want cancelled saying where the install stopped", job.Status, job.Error)
	}
	if svc := f.service(t); svc.Status != "needs_repair" || !strings.Contains(svc.RepairReason, "reinstall it") {
		t.Errorf("service %s (%s) after a reinstall stopped halfway; want needs_repair", svc.Status, svc.RepairReason)
	}
	if m := f.server(t, 1); m.OS != "Debian 12" {
		t.Errorf("server runs %q after the stopped reinstall; the sim keeps the old OS of an aborted install", m.OS)
	}
}

func TestBareMetalProvisionRefusedByTenantosGivesTheServerBack(t *testing.T) {
	t.Parallel()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	job := f.h.Insert(jobs.BareMetalProvisionArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 99}}, f.svc.ID,
		jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
	job = f.h.Run(context.Background(), job, 5)
	if job.Status != jobs.StatusFailed || !strings.Contains(job.Error, "profile") || !strings.Contains(job.Error, "given back to the pool") {
		t.Fatalf("provision ended %s: %q; want failed in Tenantos' words, the server given back", job.Status, job.Error)
	}
	if m := f.server(t, 1); !inPool(m) {
		t.Errorf("server 1 after the refused provision: %+v; want it back in the pool", m)
	}
	if svc := f.service(t); string(svc.ProviderRef) != "{}" || svc.Status != "pending" {
		t.Errorf("service %s ref %s after the refused provision; want pending without a claim", svc.Status, svc.ProviderRef)
	}
}

func TestBareMetalTerminationOfASuspendedServiceWipesAndReleasesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	f.provision(t)
	if job := f.h.Run(ctx, f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "suspend"}, f.svc.ID, jobs.Request{}), 5); job.Status != jobs.StatusSucceeded {
		t.Fatalf("suspend ended %s: %s", job.Status, job.Error)
	}
	f.svc = f.service(t)
	if job := f.h.Run(ctx, terminationJob(t, f.h, f.svc), 5); job.Status != jobs.StatusSucceeded {
		t.Fatalf("termination ended %s: %s", job.Status, job.Error)
	}
	if m := f.server(t, 1); !inPool(m) || len(m.SuspendedUserIDs) > 0 || m.OS != "" {
		t.Errorf("server after the termination of a suspended service: %+v; want it wiped, unsuspended and in the pool", m)
	}
}

func TestBareMetalTerminationRetriedAfterItsWipeDoesNotWipeTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	f.provision(t)
	// The wipe runs; the release's last write fails, and the step is retried.
	f.panel.Inject(simkit.Fault{Op: "servers.update", Status: 500, Times: 1})
	if job := f.h.Run(ctx, terminationJob(t, f.h, f.svc), 5); job.Status != jobs.StatusSucceeded {
		t.Fatalf("termination ended %s: %s", job.Status, job.Error)
	}
	if n := f.panel.CountInstalls(1); n != 2 {
		t.Errorf("%d installs on server 1, want 2: the provision's and one wipe", n)
	}
	if m := f.server(t, 1); !inPool(m) {
		t.Errorf("server after the termination: %+v; want it in the pool", m)
	}
}

func TestBareMetalProvisionTakesOnlyFreeServersOfThePool(t *testing.T) {
	tests := []struct {
		name string
		plan jobs.BareMetalPlan
		want string
	}{
		{"a named server another customer rents", jobs.BareMetalPlan{ServerID: 2}, "is not free"},
		{"a named suspended server outside the pool", jobs.BareMetalPlan{ServerID: 4}, "is not free"},
		{"a plan naming another customer's tag", jobs.BareMetalPlan{Tags: []string{"Clients"}}, "no free server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newBareMetalFixture(t, 40*time.Millisecond, tt.plan)
			job := f.h.Run(context.Background(), f.provisionJob(), 1)
			if jobs.Finished(job.Status) && job.Status != jobs.StatusFailed || !strings.Contains(job.Error, tt.want) {
				t.Fatalf("provision %s: %q; want it refused saying %q", job.Status, job.Error, tt.want)
			}
			for _, id := range []int{2, 4} {
				if m := f.server(t, id); hasAnyMark(m) || f.panel.CountInstalls(id) != 0 {
					t.Errorf("server %d was touched: %+v", id, m)
				}
			}
		})
	}
}

func hasAnyMark(m tenantossim.Machine) bool {
	return slices.ContainsFunc(m.Tags, func(t string) bool { return strings.HasPrefix(t, "provisiond-service:") })
}

func TestBareMetalProvisionRefusesARescueProfile(t *testing.T) {
	t.Parallel()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	job := f.h.Insert(jobs.BareMetalProvisionArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 10}}, f.svc.ID,
		jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
	job = f.h.Run(context.Background(), job, 5)
	if job.Status != jobs.StatusFailed || !strings.Contains(job.Error, "is a rescue system") || !strings.Contains(job.Error, "given back") {
		t.Fatalf("provision ended %s: %q; want failed, the rescue profile refused and the server given back", job.Status, job.Error)
	}
	if f.panel.CountInstalls(1) != 0 || !inPool(f.server(t, 1)) {
		t.Errorf("server 1 after the refusal: %+v, %d installs", f.server(t, 1), f.panel.CountInstalls(1))
	}
}

func TestBareMetalInstallTenantosForgotFailsAndNeedsRepair(t *testing.T) {
	t.Parallel()
	f := newBareMetalFixture(t, 2*time.Second, jobs.BareMetalPlan{})
	f.svc.Status = "active"
	ref := []byte(`{"serverId":1}`)
	q := queries.New(f.h.Pool)
	if err := q.SetServiceProvisioned(context.Background(), queries.SetServiceProvisionedParams{ID: f.svc.ID, ProviderRef: ref}); err != nil {
		t.Fatal(err)
	}
	m := f.server(t, 1)
	m.Tags = []string{"provisiond-service:" + f.svc.ID.String()}
	f.panel.AddServer(m)
	job := f.h.Insert(jobs.BareMetalReinstallArgs{ServiceID: f.svc.ID, Install: jobs.BareMetalInstall{ProfileID: 2}}, f.svc.ID,
		jobs.Request{Secrets: jobs.InstallSecrets{Password: testRootPassword}})
	done := make(chan queries.Job)
	go func() { done <- f.h.Run(context.Background(), job, 3) }()
	jobtest.Eventually(t, 10*time.Second, "the install to run", func() bool { return f.panel.CountInstalls(1) == 1 })
	f.panel.AddServer(f.server(t, 1)) // Tenantos forgets the install under way
	if job = <-done; job.Status != jobs.StatusFailed || !strings.Contains(job.Error, "no longer shows the installation") {
		t.Fatalf("reinstall ended %s: %q; want failed, the install lost", job.Status, job.Error)
	}
	if svc := f.service(t); svc.Status != "needs_repair" {
		t.Errorf("service %s after Tenantos lost its install; want needs_repair", svc.Status)
	}
}

func TestBareMetalTerminationGivesTheServerBackToThePoolsOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{User: 7})
	before := f.server(t, 1).UserID
	f.provision(t)
	if m := f.server(t, 1); m.UserID != 7 {
		t.Fatalf("server owned by %d after provision, want the plan's user 7", m.UserID)
	}
	if job := f.h.Run(ctx, terminationJob(t, f.h, f.svc), 5); job.Status != jobs.StatusSucceeded {
		t.Fatalf("termination ended %s: %s", job.Status, job.Error)
	}
	if m := f.server(t, 1); m.UserID != before || !inPool(m) {
		t.Errorf("server after termination: owner %d, tags %q; want its pool owner %d back, in the pool", m.UserID, m.Tags, before)
	}
}

func TestBareMetalUsageAndVerifyReadTheServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBareMetalFixture(t, 40*time.Millisecond, jobs.BareMetalPlan{})
	f.provision(t)
	u, err := f.w.Usage(ctx, "", []queries.Service{f.svc})
	if err != nil || !u[f.svc.ID].Online || u[f.svc.ID].NetIn <= 0 || u[f.svc.ID].NetOut <= 0 {
		t.Errorf("usage %+v, %v: want the server online with the month's traffic", u, err)
	}
	if drift, err := f.w.Verify(ctx, &f.svc, jobtest.Logger(t)); err != nil || len(drift) != 0 {
		t.Errorf("drift of a sound server: %+v, %v", drift, err)
	}
	m := f.server(t, 1)
	m.Tags = []string{"hand-edited"}
	f.panel.AddServer(m)
	drift, err := f.w.Verify(ctx, &f.svc, jobtest.Logger(t))
	if err != nil || len(drift) != 1 || drift[0].Kind != jobs.DriftForeign {
		t.Fatalf("drift of a server without the mark: %+v, %v; want it foreign", drift, err)
	}
	if svc := f.service(t); svc.Status != "needs_repair" {
		t.Errorf("service %s after its server lost the mark; want needs_repair", svc.Status)
	}
}
