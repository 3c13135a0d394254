package jobs_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	pterosim "github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/worktest"
	"github.com/hostfleet/provisiond/queries"
)

// gameFixture is a harness with the Pterodactyl workers over a simulated
// panel, and a pending game server service.
type gameFixture struct {
	h     *worktest.Harness
	panel *pterosim.Server
	svc   queries.Service
}

var testGamePlan = jobs.GamePlan{MemoryMB: 2048, DiskMB: 10240, CPU: 200, Databases: 1, Allocations: 1, Backups: 2,
	Nest: 1, Egg: 1, Locations: []int{1}, User: 2}

func newGameFixture(t *testing.T) *gameFixture {
	t.Helper()
	h := worktest.New(t)
	panel := pterosim.New(pterosim.Config{ApplicationKeys: []string{"ptla_t"}, ClientKeys: map[string]int{"ptlc_t": 1},
		TaskDuration: 5 * time.Millisecond, InstallDuration: 10 * time.Millisecond, Seed: 1})
	srv := httptest.NewServer(panel)
	t.Cleanup(func() { srv.Close(); panel.Close() })
	c, err := pterodactyl.New(pterodactyl.Config{URL: srv.URL, ApplicationKey: "ptla_t", ClientKey: "ptlc_t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := json.Marshal(testGamePlan)
	svc := h.Service(pterodactyl.Provider, plan, []byte(`{}`))
	if err := queries.New(h.Pool).SetServiceStatus(context.Background(), queries.SetServiceStatusParams{ID: svc.ID, Status: "pending"}); err != nil {
		t.Fatal(err)
	}
	games := &jobs.GameWorkers{Queries: h.Queries, Pterodactyl: c, PollInterval: 5 * time.Millisecond}
	providers := jobs.NewRegistry(games)
	games.AddWorkers(h.Workers)
	jobs.AddWorker(h.Workers, &jobs.PowerWorker{Queries: h.Queries, Providers: providers})
	jobs.AddWorker(h.Workers, &jobs.TerminationWorker{Queries: h.Queries, Providers: providers})
	return &gameFixture{h: h, panel: panel, svc: svc}
}

// provision runs the service's provision job to its end.
func (f *gameFixture) provision(t *testing.T) queries.Job {
	t.Helper()
	job := f.h.Run(context.Background(), f.h.Insert(jobs.GameProvisionArgs{ServiceID: f.svc.ID}, f.svc.ID, jobs.Request{}), 5)
	if job.Status != jobs.StatusSucceeded {
		t.Fatalf("provision ended %s: %s", job.Status, job.Error)
	}
	f.svc = f.service(t)
	return job
}

func (f *gameFixture) service(t *testing.T) queries.Service {
	t.Helper()
	svc, err := queries.New(f.h.Pool).GetService(context.Background(), f.svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// server is the service's game server on the panel.
func (f *gameFixture) server(t *testing.T) (pterosim.GameServer, bool) {
	t.Helper()
	ref, err := jobs.PterodactylRef(&f.svc)
	if err != nil {
		t.Fatal(err)
	}
	return f.panel.Server(ref.ServerID)
}

// TestGameWorkers runs one job of every Pterodactyl kind to its end
// against the simulated panel and checks what it did there.
func TestGameWorkers(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// job returns the job to run on a provisioned service.
		job   func(t *testing.T, f *gameFixture) queries.Job
		check func(t *testing.T, f *gameFixture)
	}{
		{
			name: "game.provision creates the server with the service's id and starts it",
			job:  func(t *testing.T, f *gameFixture) queries.Job { return f.provision(t) },
			check: func(t *testing.T, f *gameFixture) {
				srv, ok := f.server(t)
				if !ok || srv.ExternalID != f.svc.ID.String() || srv.State != pterosim.StateRunning || f.svc.Status != "active" {
					t.Errorf("server %+v, service %s; want a running server with the service's id, and the service active", srv, f.svc.Status)
				}
			},
		},
		{
			name: "service.power stop takes the server offline",
			job: func(t *testing.T, f *gameFixture) queries.Job {
				f.provision(t)
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "stop"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *gameFixture) {
				if srv, _ := f.server(t); srv.State != pterosim.StateOffline || f.service(t).PowerState != "stopped" {
					t.Errorf("server %s, recorded %s; want offline and stopped", srv.State, f.service(t).PowerState)
				}
			},
		},
		{
			name: "service.power suspend suspends the server and the service",
			job: func(t *testing.T, f *gameFixture) queries.Job {
				f.provision(t)
				return f.h.Insert(jobs.PowerArgs{ServiceID: f.svc.ID, Action: "suspend"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *gameFixture) {
				if srv, _ := f.server(t); srv.Status != pterosim.StatusSuspended || f.service(t).Status != "suspended" {
					t.Errorf("server %q, service %s; want both suspended", srv.Status, f.service(t).Status)
				}
			},
		},
		{
			name: "game.reinstall reinstalls the server with the new settings",
			job: func(t *testing.T, f *gameFixture) queries.Job {
				f.provision(t)
				return f.h.Insert(jobs.GameReinstallArgs{ServiceID: f.svc.ID, Environment: map[string]string{"MINECRAFT_VERSION": "1.20.4"}}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *gameFixture) {
				if srv, _ := f.server(t); srv.Status != "" || srv.Environment["MINECRAFT_VERSION"] != "1.20.4" {
					t.Errorf("server status %q, version %q; want installed with 1.20.4", srv.Status, srv.Environment["MINECRAFT_VERSION"])
				}
			},
		},
		{
			name: "game.change-plan gives the server the new limits",
			job: func(t *testing.T, f *gameFixture) queries.Job {
				f.provision(t)
				plan := testGamePlan
				plan.MemoryMB = 4096
				return f.h.Insert(jobs.GameChangePlanArgs{ServiceID: f.svc.ID, Plan: plan}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *gameFixture) {
				plan, _ := jobs.GameServicePlan(ptr(f.service(t)))
				if srv, _ := f.server(t); srv.Limits.Memory != 4096 || plan.MemoryMB != 4096 {
					t.Errorf("server memory %d, plan %d; want 4096 both", srv.Limits.Memory, plan.MemoryMB)
				}
			},
		},
		{
			name: "game.backup makes one backup",
			job: func(t *testing.T, f *gameFixture) queries.Job {
				f.provision(t)
				return f.h.Insert(jobs.GameBackupArgs{ServiceID: f.svc.ID, Action: "create", Name: "nightly"}, f.svc.ID, jobs.Request{})
			},
			check: func(t *testing.T, f *gameFixture) {
				srv, _ := f.server(t)
				if b := f.panel.Backups(srv.ID); len(b) != 1 {
					t.Errorf("%d backups, want 1", len(b))
				}
			},
		},
		{
			name: "service.terminate deletes the server",
			job: func(t *testing.T, f *gameFixture) queries.Job {
				f.provision(t)
				return terminationJob(t, f.h, f.svc)
			},
			check: func(t *testing.T, f *gameFixture) {
				if _, ok := f.server(t); ok || f.service(t).Status != "terminated" {
					t.Errorf("server still there %v, service %s; want gone and terminated", ok, f.service(t).Status)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newGameFixture(t)
			job := f.h.Run(ctx, tt.job(t, f), 5)
			if job.Status != jobs.StatusSucceeded {
				t.Fatalf("job %s ended %s: %s", job.Kind, job.Status, job.Error)
			}
			f.svc = f.service(t)
			tt.check(t, f)
		})
	}
}

// TestGameProvisionSurvivesAFailedWriteAnywhere fails each statement of a
// game server's provision in turn: the job still ends with one server.
func TestGameProvisionSurvivesAFailedWriteAnywhere(t *testing.T) {
	ctx := context.Background()
	f := newGameFixture(t)
	f.h.FailAt(0)
	f.provision(t)
	n := f.h.Statements()
	t.Logf("the provision runs %d statements; failing each in turn", n)
	for failAt := 1; failAt <= n; failAt++ {
		t.Run(strconv.Itoa(failAt), func(t *testing.T) {
			t.Parallel()
			f := newGameFixture(t)
			job := f.h.Insert(jobs.GameProvisionArgs{ServiceID: f.svc.ID}, f.svc.ID, jobs.Request{})
			f.h.FailAt(failAt)
			if job = f.h.Run(ctx, job, 10); job.Status != jobs.StatusSucceeded {
				t.Errorf("the job ended %s: %s", job.Status, job.Error)
			}
			if servers := len(f.panel.Servers()); servers != 1 {
				t.Errorf("%d servers on the panel, want 1", servers)
			}
		})
	}
}
