package jobs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

// fixture is a team, a service and a queued job on real PostgreSQL and Redis.
type fixture struct {
	q      *queries.Queries
	client *Client
	redis  asynq.RedisClientOpt
	team   queries.Team
	svc    queries.Service
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	pool, _ := jobtest.DB(t)
	ropt := jobtest.Redis(t)
	q := queries.New(pool)
	tasks := asynq.NewClient(ropt)
	t.Cleanup(func() { tasks.Close() })
	ctx := context.Background()
	team, err := q.CreateTeam(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := q.CreateService(ctx, queries.CreateServiceParams{
		TeamID: team.ID, Name: "vps", Provider: "proxmox", ProviderRef: []byte(`{"node":"pve1","vmid":100}`),
		Plan: []byte(`{}`), Status: "active",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{q: q, client: NewClient(q, tasks, time.Hour, jobtest.Logger(t)), redis: ropt, team: team, svc: svc}
}

func (f *fixture) insert(t testing.TB) queries.Job {
	t.Helper()
	job, _, err := f.client.Insert(context.Background(), PowerArgs{ServiceID: f.svc.ID, Action: "restart"},
		Request{TeamID: f.team.ID, ServiceID: f.svc.ID, RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// attempt starts an attempt the way the worker does and returns its Run.
func (f *fixture) attempt(t testing.TB, id uuid.UUID) *Run {
	t.Helper()
	row, err := f.q.StartJobAttempt(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	run, err := newRun(f.q, row, jobtest.Logger(t), &Sealer{})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestRunSkipsStepsAnEarlierAttemptFinished(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	job := f.insert(t)
	calls := map[string]int{}
	step := func(name string, err error) Step {
		return Step{name, func(context.Context) error { calls[name]++; return err }}
	}
	boom := errors.New("boom")
	if err := f.attempt(t, job.ID).Steps(ctx, step("a", nil), step("b", boom)); !errors.Is(err, boom) {
		t.Fatalf("first attempt: %v, want boom", err)
	}
	if err := f.attempt(t, job.ID).Steps(ctx, step("a", nil), step("b", nil)); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if calls["a"] != 1 || calls["b"] != 2 {
		t.Fatalf("calls = %v, want a once and b twice", calls)
	}
	row, _ := f.q.GetJob(ctx, job.ID)
	if row.Progress != 100 || row.Step != "b" || row.Attempts != 2 {
		t.Fatalf("job after both attempts: progress %d, step %q, attempts %d", row.Progress, row.Step, row.Attempts)
	}
}

func TestRememberedValuesReachTheNextAttempt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	job := f.insert(t)
	interrupted := errors.New("interrupted")
	first := f.attempt(t, job.ID)
	err := first.Steps(ctx, Step{"clone", func(ctx context.Context) error {
		if err := first.Remember(ctx, "upid", "UPID:x"); err != nil {
			return err
		}
		return interrupted
	}})
	if !errors.Is(err, interrupted) {
		t.Fatal(err)
	}
	second := f.attempt(t, job.ID)
	var got string
	err = second.Steps(ctx, Step{"clone", func(ctx context.Context) error {
		ok, err := second.Recall("upid", &got)
		if !ok || err != nil {
			t.Fatalf("Recall = %v, %v", ok, err)
		}
		return nil
	}})
	if err != nil || got != "UPID:x" {
		t.Fatalf("second attempt recalled %q (%v), want UPID:x", got, err)
	}
}

func TestJobValuesReachLaterStepsAndAttempts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	job := f.insert(t)
	first := f.attempt(t, job.ID)
	err := first.Steps(ctx, Step{"place", func(ctx context.Context) error { return first.Set(ctx, "vmid", 123) }},
		Step{"clone", func(context.Context) error { return errors.New("interrupted") }})
	if err == nil {
		t.Fatal("the interrupted attempt succeeded")
	}
	second := f.attempt(t, job.ID)
	var got int
	err = second.Steps(ctx, Step{"place", func(context.Context) error { t.Error("finished step ran again"); return nil }},
		Step{"clone", func(context.Context) error {
			ok, err := second.Get("vmid", &got)
			if !ok || err != nil {
				return fmt.Errorf("Get = %v, %v", ok, err)
			}
			return nil
		}})
	if err != nil || got != 123 {
		t.Fatalf("second attempt got %d (%v), want 123", got, err)
	}
}

func TestSupersededAttemptCannotWrite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	job := f.insert(t)
	old := f.attempt(t, job.ID)
	f.attempt(t, job.ID) // a newer attempt took the job over
	err := old.Steps(ctx, Step{"stop", func(context.Context) error { return nil }})
	if !errors.Is(err, errSuperseded) {
		t.Fatalf("old attempt's step: %v, want errSuperseded", err)
	}
}

func TestCancelRequestStopsBeforeTheNextStep(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	job := f.insert(t)
	run := f.attempt(t, job.ID)
	ran := false
	err := run.Steps(ctx,
		Step{"shutdown", func(ctx context.Context) error {
			_, err := f.q.RequestJobCancel(ctx, job.ID)
			return err
		}},
		Step{"start", func(context.Context) error { ran = true; return nil }},
	)
	if !errors.Is(err, ErrCancelled) || ran {
		t.Fatalf("Steps = %v, second step ran: %v; want ErrCancelled before it", err, ran)
	}
}

func TestIdempotencyKeyIsPerTeam(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	args := PowerArgs{ServiceID: f.svc.ID, Action: "stop"}
	req := Request{TeamID: f.team.ID, ServiceID: f.svc.ID, IdempotencyKey: "k", RequestHash: []byte("h")}
	first, replayed, err := f.client.Insert(ctx, args, req)
	if err != nil || replayed {
		t.Fatalf("first insert: %v, replayed %v", err, replayed)
	}
	other, _ := f.q.CreateTeam(ctx, "other")
	otherSvc, _ := f.q.CreateService(ctx, queries.CreateServiceParams{TeamID: other.ID, Name: "x", Provider: "proxmox", ProviderRef: []byte(`{}`), Plan: []byte(`{}`), Status: "active"})
	req2 := Request{TeamID: other.ID, ServiceID: otherSvc.ID, IdempotencyKey: "k", RequestHash: []byte("h")}
	second, replayed, err := f.client.Insert(ctx, PowerArgs{ServiceID: otherSvc.ID, Action: "stop"}, req2)
	if err != nil || replayed || second.ID == first.ID {
		t.Fatalf("other team's insert with the same key: %v, replayed %v, same job %v", err, replayed, second.ID == first.ID)
	}
}
