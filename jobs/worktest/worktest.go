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
	db      *FaultyDB
}

// New returns a harness on a fresh database (and a Redis database for the
// tasks the client enqueues, which no worker takes).
func New(t testing.TB) *Harness {
	t.Helper()
	pool, _ := jobtest.DB(t)
	db := NewFaultyDB(pool)
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
func (h *Harness) FailAt(n int) { h.db.FailAt(n) }

// Statements counts the statements run on the harness's Queries since the
// last FailAt.
func (h *Harness) Statements() int { return h.db.Statements() }

// FaultyDB is the pool as a queries.DBTX, and a beginner of transactions,
// whose statement number n (counted across plain statements, transactions,
// savepoints and commits) fails with ErrInjected, as a database that went
// away between two writes would.
type FaultyDB struct {
	pool      *pgxpool.Pool
	mu        sync.Mutex
	failAt, n int
}

// NewFaultyDB returns a FaultyDB over the pool that fails nothing yet.
func NewFaultyDB(pool *pgxpool.Pool) *FaultyDB { return &FaultyDB{pool: pool} }

// FailAt makes the nth statement from now fail (once); 0 fails none. It
// resets the count.
func (d *FaultyDB) FailAt(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failAt, d.n = n, 0
}

// Statements counts the statements since the last FailAt.
func (d *FaultyDB) Statements() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

func (d *FaultyDB) step() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if d.n == d.failAt {
		return ErrInjected
	}
	return nil
}

// Exec implements queries.DBTX.
func (d *FaultyDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return faultyExec(ctx, d, d.pool, sql, args)
}

// Query implements queries.DBTX.
func (d *FaultyDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return faultyQuery(ctx, d, d.pool, sql, args)
}

// QueryRow implements queries.DBTX.
func (d *FaultyDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return faultyQueryRow(ctx, d, d.pool, sql, args)
}

// Begin begins a transaction whose statements count too.
func (d *FaultyDB) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := d.step(); err != nil {
		return nil, err
	}
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &faultyTx{Tx: tx, db: d}, nil
}

type faultyTx struct {
	pgx.Tx
	db *FaultyDB
}

func (t *faultyTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.db.step(); err != nil {
		return nil, err
	}
	sp, err := t.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &faultyTx{Tx: sp, db: t.db}, nil
}

func (t *faultyTx) Commit(ctx context.Context) error {
	if err := t.db.step(); err != nil {
		_ = t.Tx.Rollback(ctx)
		return err
	}
	return t.Tx.Commit(ctx)
}

func (t *faultyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return faultyExec(ctx, t.db, t.Tx, sql, args)
}

func (t *faultyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return faultyQuery(ctx, t.db, t.Tx, sql, args)
}

func (t *faultyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return faultyQueryRow(ctx, t.db, t.Tx, sql, args)
}

func faultyExec(ctx context.Context, d *FaultyDB, db queries.DBTX, sql string, args []any) (pgconn.CommandTag, error) {
	if err := d.step(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return db.Exec(ctx, sql, args...)
}

func faultyQuery(ctx context.Context, d *FaultyDB, db queries.DBTX, sql string, args []any) (pgx.Rows, error) {
	if err := d.step(); err != nil {
		return nil, err
	}
	return db.Query(ctx, sql, args...)
}

func faultyQueryRow(ctx context.Context, d *FaultyDB, db queries.DBTX, sql string, args []any) pgx.Row {
	if err := d.step(); err != nil {
		return errRow{err}
	}
	return db.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
