// Package worktest drives job workers one attempt at a time against a real
// PostgreSQL, as rivertest drives River's: a job is recorded as the API
// records it, and each attempt runs the way a worker process runs a
// delivered task (the row moved to running, the kind's worker, the outcome
// recorded), without asynq in between. A test can make any statement on
// the database fail (FailAt), to see what a crash or a lost connection
// between two writes leaves, and then run the attempts a redelivery would.
package worktest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/monitoring/metrics"
	"github.com/hostfleet/provisiond/queries"
)

// ErrInjected is the failure FailAt injects.
var ErrInjected = errors.New("worktest: injected database failure")

// Harness is a database, a team, and the workers under test.
type Harness struct {
	t testing.TB
	// Pool is the test's database; Queries reach it through the fault
	// injector, and the workers under test must be given them.
	Pool    *pgxpool.Pool
	Queries *queries.Queries
	Workers *jobs.Workers
	Client  *jobs.Client
	Team    queries.Team
	db      *faultyDB
}

// New returns a harness on a fresh database (and a Redis database for the
// tasks the client enqueues, which no worker takes).
func New(t testing.TB) *Harness {
	t.Helper()
	pool, _ := jobtest.DB(t)
	db := &faultyDB{pool: pool}
	q := queries.New(db)
	tasks := asynq.NewClient(jobtest.Redis(t))
	t.Cleanup(func() { tasks.Close() })
	log := jobtest.Logger(t)
	team, err := queries.New(pool).CreateTeam(context.Background(), "worktest")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := jobs.NewSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{t: t, Pool: pool, Queries: q, Workers: jobs.NewWorkers(q, metrics.New(), log),
		Client: jobs.NewClient(queries.New(pool), tasks, time.Hour, log), Team: team, db: db}
	h.Workers.Sealer, h.Client.Sealer = sealer, sealer
	return h
}

// testKey seals the harness's job secrets.
const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// Service records an active service of the harness's team.
func (h *Harness) Service(provider string, plan, ref []byte) queries.Service {
	h.t.Helper()
	svc, err := queries.New(h.Pool).CreateService(context.Background(), queries.CreateServiceParams{
		TeamID: h.Team.ID, Name: "svc", Provider: provider, ProviderRef: ref, Plan: plan, Status: "active",
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return svc
}

// Insert records a job for args on the service (uuid.Nil for none); req
// may add to the request (a derived job id, secrets).
func (h *Harness) Insert(args jobs.Args, service uuid.UUID, req jobs.Request) queries.Job {
	h.t.Helper()
	req.TeamID, req.ServiceID, req.RequestedBy = h.Team.ID, service, "worktest"
	job, _, err := h.Client.Insert(context.Background(), args, req)
	if err != nil {
		h.t.Fatal(err)
	}
	return job
}

// Attempt runs one attempt of the job and returns its row afterwards and
// what asynq would have been told.
func (h *Harness) Attempt(ctx context.Context, job queries.Job) (queries.Job, error) {
	h.t.Helper()
	err := h.Workers.Work(ctx, job)
	return h.Job(job.ID), err
}

// Run runs attempts of the job, as asynq's redeliveries would, until it
// has ended or max attempts have run, and returns its row.
func (h *Harness) Run(ctx context.Context, job queries.Job, max int) queries.Job {
	h.t.Helper()
	for range max {
		if job, _ = h.Attempt(ctx, job); jobs.Finished(job.Status) {
			break
		}
	}
	return job
}

// Job reads the job's row, past any injected failure.
func (h *Harness) Job(id uuid.UUID) queries.Job {
	h.t.Helper()
	job, err := queries.New(h.Pool).GetJob(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return job
}

// FailAt makes the nth statement from now on the harness's Queries fail
// with ErrInjected (once); 0 injects nothing. It resets the count.
func (h *Harness) FailAt(n int) {
	h.db.mu.Lock()
	defer h.db.mu.Unlock()
	h.db.failAt, h.db.n = n, 0
}

// Statements counts the statements run on the harness's Queries since the
// last FailAt.
func (h *Harness) Statements() int {
	h.db.mu.Lock()
	defer h.db.mu.Unlock()
	return h.db.n
}

// faultyDB is a queries.DBTX over the pool whose statement number failAt
// fails.
type faultyDB struct {
	pool      *pgxpool.Pool
	mu        sync.Mutex
	failAt, n int
}

func (d *faultyDB) step() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if d.n == d.failAt {
		return ErrInjected
	}
	return nil
}

func (d *faultyDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := d.step(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return d.pool.Exec(ctx, sql, args...)
}

func (d *faultyDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := d.step(); err != nil {
		return nil, err
	}
	return d.pool.Query(ctx, sql, args...)
}

func (d *faultyDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := d.step(); err != nil {
		return errRow{err}
	}
	return d.pool.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
