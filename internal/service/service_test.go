package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/jobs/worktest"
	"github.com/hostfleet/provisiond/queries"
)

// fixture is a team with an active service, and the use cases over a
// faulty database.
type fixture struct {
	pool *pgxpool.Pool
	q    *queries.Queries
	in   *asynq.Inspector
	db   *worktest.FaultyDB
	// failAt is the statement the use case under test fails at.
	failAt int
	s      *service.Services
	team   queries.Team
	svc    queries.Service
}

func newFixture(t *testing.T, failAt int) *fixture {
	t.Helper()
	pool, _ := jobtest.DB(t)
	ropt := jobtest.Redis(t)
	q := queries.New(pool)
	tasks := asynq.NewClient(ropt)
	t.Cleanup(func() { tasks.Close() })
	in := asynq.NewInspector(ropt)
	t.Cleanup(func() { in.Close() })
	ctx := context.Background()
	team, err := q.CreateTeam(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(30 * 24 * time.Hour)
	svc, err := q.CreateService(ctx, queries.CreateServiceParams{TeamID: team.ID, Name: "vps", Provider: "proxmox",
		ProviderRef: []byte(`{"node":"pve1","vmid":100}`), Plan: []byte(`{}`), Status: "active", BillingPeriodEnd: &end})
	if err != nil {
		t.Fatal(err)
	}
	db := worktest.NewFaultyDB(pool)
	db.FailAt(failAt)
	log := jobtest.Logger(t)
	return &fixture{pool: pool, q: q, in: in, db: db, failAt: failAt, team: team, svc: svc,
		s: &service.Services{DB: db, Queries: q, Jobs: jobs.NewClient(q, tasks, time.Hour, log), Tasks: in,
			CancelGrace: time.Hour, Log: log}}
}

// serviceJobs returns the service's jobs, and how many of them have a task.
func (f *fixture) serviceJobs(t *testing.T, svc uuid.UUID) ([]queries.Job, int) {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT id, queue FROM jobs WHERE service_id = $1`, svc)
	if err != nil {
		t.Fatal(err)
	}
	var out []queries.Job
	tasks := 0
	for rows.Next() {
		var j queries.Job
		if err := rows.Scan(&j.ID, &j.Queue); err != nil {
			t.Fatal(err)
		}
		if _, err := f.in.GetTaskInfo(j.Queue, j.ID.String()); err == nil {
			tasks++
		}
		out = append(out, j)
	}
	return out, tasks
}

// statements counts the statements a use case runs when nothing fails.
func statements(t *testing.T, act func(f *fixture) error) int {
	t.Helper()
	f := newFixture(t, 0)
	if err := act(f); err != nil {
		t.Fatalf("without failures: %v", err)
	}
	return f.db.Statements()
}

// TestWritesThatBelongTogetherAreAllOrNothing fails each statement of each
// use case in turn, and checks that what it writes is there in whole (with
// its jobs' tasks enqueued) or not at all.
func TestWritesThatBelongTogetherAreAllOrNothing(t *testing.T) {
	by := service.Actor{By: "test"}
	tests := []struct {
		name string
		// prepare brings the fixture where the use case starts.
		prepare func(t *testing.T, f *fixture)
		act     func(f *fixture) error
		// whole reports whether everything was written, none whether
		// nothing was; a failure must leave one of them true.
		whole, none func(t *testing.T, f *fixture) bool
	}{
		{
			name: "service and its provisioning job",
			act: func(f *fixture) error {
				_, _, _, err := f.s.Create(context.Background(), service.NewService{
					Params: queries.CreateServiceParams{TeamID: f.team.ID, Name: "new", Provider: "proxmox",
						ProviderRef: []byte(`{}`), Plan: []byte(`{}`), Status: "pending"},
					Job:     func(id uuid.UUID) jobs.Args { return jobs.ProvisionArgs{ServiceID: id} },
					Request: jobs.Request{TeamID: f.team.ID, RequestedBy: "test"},
				})
				return err
			},
			whole: func(t *testing.T, f *fixture) bool {
				svcs := f.services(t, "new")
				if len(svcs) != 1 {
					return false
				}
				js, tasks := f.serviceJobs(t, svcs[0])
				return len(js) == 1 && tasks == 1
			},
			none: func(t *testing.T, f *fixture) bool { return len(f.services(t, "new")) == 0 },
		},
		{
			name: "immediate cancellation, its termination and its suspension",
			act: func(f *fixture) error {
				_, err := f.s.Cancel(context.Background(), f.svc, service.Immediately, "moving", by)
				return err
			},
			whole: func(t *testing.T, f *fixture) bool {
				svc := f.reload(t)
				js, tasks := f.serviceJobs(t, svc.ID)
				return svc.TerminationJobID.Valid && len(js) == 2 && tasks == 2
			},
			none: func(t *testing.T, f *fixture) bool {
				js, _ := f.serviceJobs(t, f.svc.ID)
				return !f.reload(t).TerminationJobID.Valid && len(js) == 0
			},
		},
		{
			name: "withdrawal, the termination's end and the resumption",
			prepare: func(t *testing.T, f *fixture) {
				if _, err := f.s.Cancel(context.Background(), f.svc, service.Immediately, "", by); err != nil {
					t.Fatal(err)
				}
				if _, err := f.q.AddSuspension(context.Background(), queries.AddSuspensionParams{ID: f.svc.ID, Reason: jobs.SuspendedForCancellation}); err != nil {
					t.Fatal(err)
				}
				f.svc = f.reload(t)
			},
			act: func(f *fixture) error {
				_, err := f.s.Withdraw(context.Background(), f.svc, by)
				return err
			},
			whole: func(t *testing.T, f *fixture) bool {
				term, err := f.q.GetJob(context.Background(), f.svc.TerminationJobID.UUID)
				resume, rerr := f.q.GetJob(context.Background(), jobs.CancellationPowerJobID(f.svc.ID, f.svc.CancellationGeneration, "resume"))
				return err == nil && rerr == nil && term.Status == jobs.StatusCancelled && !f.reload(t).TerminationJobID.Valid && resume.Status == jobs.StatusQueued
			},
			none: func(t *testing.T, f *fixture) bool {
				term, err := f.q.GetJob(context.Background(), f.svc.TerminationJobID.UUID)
				_, rerr := f.q.GetJob(context.Background(), jobs.CancellationPowerJobID(f.svc.ID, f.svc.CancellationGeneration, "resume"))
				return err == nil && term.Status == jobs.StatusScheduled && f.reload(t).TerminationJobID.Valid && errors.Is(rerr, pgx.ErrNoRows)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := func(f *fixture) error {
				if tt.prepare != nil {
					failAt := f.failAt
					f.db.FailAt(0)
					tt.prepare(t, f)
					f.db.FailAt(failAt)
				}
				return tt.act(f)
			}
			n := statements(t, run)
			t.Logf("the use case runs %d statements; failing each in turn", n)
			if n < 2 {
				t.Fatalf("the use case ran %d statements; want a transaction of several", n)
			}
			for failAt := 1; failAt <= n; failAt++ {
				f := newFixture(t, failAt)
				err := run(f)
				if !errors.Is(err, worktest.ErrInjected) {
					t.Fatalf("statement %d of %d failed: the use case returned %v, want the failure", failAt, n, err)
				}
				if !tt.none(t, f) {
					t.Errorf("statement %d of %d failed: part of the writes remained", failAt, n)
				}
			}
			f := newFixture(t, 0)
			if err := run(f); err != nil || !tt.whole(t, f) {
				t.Errorf("without failures: err %v, or not everything was written and enqueued", err)
			}
		})
	}
}

// services returns the ids of the team's services named name.
func (f *fixture) services(t *testing.T, name string) []uuid.UUID {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT id FROM services WHERE team_id = $1 AND name = $2`, f.team.ID, name)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (f *fixture) reload(t *testing.T) queries.Service {
	t.Helper()
	svc, err := f.q.GetService(context.Background(), f.svc.ID)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}
