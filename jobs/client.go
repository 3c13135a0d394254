package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hostfleet/provisiond/queries"
)

// Client records jobs and enqueues their tasks.
type Client struct {
	q         *queries.Queries
	tasks     *asynq.Client
	retention time.Duration
	log       *slog.Logger
	// Sealer seals Request.Secrets; without one, a job with secrets is
	// refused.
	Sealer *Sealer
}

// NewClient returns a Client. retention is how long asynq keeps a finished
// task, so that operators can still see it on the dashboard.
func NewClient(q *queries.Queries, tasks *asynq.Client, retention time.Duration, log *slog.Logger) *Client {
	return &Client{q: q, tasks: tasks, retention: retention, log: log, Sealer: &Sealer{}}
}

// Request says who asks for a job and on what.
type Request struct {
	TeamID    uuid.UUID
	ServiceID uuid.UUID // uuid.Nil for jobs without a service
	APIKeyID  uuid.UUID // uuid.Nil when not asked through an API key
	// RequestedBy is shown to users: the key's prefix, "cli", "scheduler".
	RequestedBy string
	// PersonID is the person who asked (uuid.Nil when not a person's key),
	// GrantID the grant they asked through (uuid.Nil for their own team's
	// service).
	PersonID, GrantID uuid.UUID
	// IdempotencyKey, when set, makes a repeated request return the first job.
	IdempotencyKey string
	// RequestHash fingerprints the request, so that an idempotency key reused
	// for a different request is refused rather than answered wrongly.
	RequestHash []byte
	// Secrets (a root password) are sealed into the job row; the worker
	// opens them with Job.OpenSecrets. Nil for none.
	Secrets any
	// JobID, when set, is the job's id (and task id): a job derived from
	// its subject, so that asking twice cannot make two.
	JobID uuid.UUID
	// RunAt, when in the future, schedules the job for then.
	RunAt time.Time
	// Guard, when set, records the job only if its service passes it,
	// checked by the insert itself (ErrGuarded when it does not).
	Guard *Guard
}

// Guard is what a job's service must be for the job to be recorded: the
// request's team's, in one of Statuses, on none of the Excluded providers.
type Guard struct {
	Statuses, Excluded []string
}

// ErrGuarded is returned when the service did not pass the request's
// Guard (it is another team's, gone, in another status or on another
// provider); the caller reads the service to say which.
var ErrGuarded = errors.New("the service does not allow the job")

// BusyError is returned when the service already has a mutating job queued
// or running.
type BusyError struct {
	Job queries.Job
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("service has job %s %s", e.Job.ID, e.Job.Status)
}

// ErrIdempotencyKeyReused is returned when an idempotency key comes back with
// a different request than the one it first came with.
var ErrIdempotencyKeyReused = errors.New("idempotency key was used for a different request")

// Insert records a job for args and enqueues its task. It returns the job and
// whether it is an earlier job returned again for the same idempotency key.
//
// The row is written first and the task second. If enqueueing fails the job
// stays queued and the error is only logged: the sweeper enqueues it later,
// so an accepted job is never lost.
func (c *Client) Insert(ctx context.Context, args Args, req Request) (queries.Job, bool, error) {
	job, replayed, err := c.insert(ctx, c.q, nil, args, req)
	if err == nil && !replayed {
		c.EnqueueRecorded(ctx, job)
	}
	return job, replayed, err
}

// InsertTx records a job as Insert does, within tx: the row commits or rolls
// back with the rows it belongs to (a service and its provisioning job, a
// cancellation and its termination). It enqueues nothing; the caller calls
// EnqueueRecorded once tx has committed (and the sweeper enqueues a
// committed job whose task was never made).
func (c *Client) InsertTx(ctx context.Context, tx pgx.Tx, args Args, req Request) (queries.Job, bool, error) {
	return c.insert(ctx, c.q.WithTx(tx), tx, args, req)
}

// EnqueueRecorded enqueues the task of a job just recorded; a failure is
// logged, not returned: the job is recorded, and the sweeper enqueues it.
func (c *Client) EnqueueRecorded(ctx context.Context, job queries.Job) {
	if err := c.Enqueue(context.WithoutCancel(ctx), job); err != nil {
		c.log.Warn("job recorded but not enqueued; the sweeper will enqueue it",
			"job_id", job.ID, "kind", job.Kind, "service_id", job.ServiceID.UUID, "err", err)
	}
}

// insert records the job with q; within a transaction (tx set) the insert
// runs in a savepoint, so that a conflict it answers leaves tx usable.
func (c *Client) insert(ctx context.Context, q *queries.Queries, tx pgx.Tx, args Args, req Request) (queries.Job, bool, error) {
	if req.IdempotencyKey != "" {
		job, err := c.byIdempotencyKey(ctx, q, req)
		if err == nil {
			return job, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return queries.Job{}, false, err
		}
	}
	params, err := c.params(args, req)
	if err != nil {
		return queries.Job{}, false, err
	}
	job, err := insertJob(ctx, q, tx, params, req.Guard)
	switch {
	case err == nil:
		return job, false, nil
	case errors.Is(err, ErrGuarded):
		return job, false, err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		switch pe.ConstraintName {
		case "jobs_pkey":
			// A derived job id asked for twice: the first job is the answer.
			job, err := q.GetJob(ctx, params.ID)
			return job, err == nil, err
		case "jobs_idempotency":
			// The same key raced us; its job is the answer.
			job, err := c.byIdempotencyKey(ctx, q, req)
			return job, err == nil, err
		case "jobs_one_active_per_service":
			active, err := q.GetActiveServiceJob(ctx, nullUUID(req.ServiceID))
			if err != nil {
				return queries.Job{}, false, fmt.Errorf("find the job holding service %s: %w", req.ServiceID, err)
			}
			return queries.Job{}, false, &BusyError{Job: active}
		}
	}
	return queries.Job{}, false, fmt.Errorf("insert %s job: %w", args.Kind(), err)
}

// insertJob inserts the row, guarded when guard is set, in a savepoint of
// tx when there is one.
func insertJob(ctx context.Context, q *queries.Queries, tx pgx.Tx, params queries.InsertJobParams, guard *Guard) (queries.Job, error) {
	insert := func(q *queries.Queries) (queries.Job, error) {
		if guard == nil {
			return q.InsertJob(ctx, params)
		}
		job, err := q.InsertGuardedJob(ctx, queries.InsertGuardedJobParams{
			ID: params.ID, Kind: params.Kind, Queue: params.Queue, Mutating: params.Mutating, Status: params.Status,
			Args: params.Args, MaxAttempts: params.MaxAttempts, TimeoutSeconds: params.TimeoutSeconds,
			IdempotencyKey: params.IdempotencyKey, RequestHash: params.RequestHash, ApiKeyID: params.ApiKeyID,
			RequestedBy: params.RequestedBy, RunAt: params.RunAt, SealedSecrets: params.SealedSecrets,
			ServiceID: params.ServiceID.UUID, TeamID: params.TeamID, Statuses: guard.Statuses, Excluded: guard.Excluded,
			PersonID: params.PersonID, GrantID: params.GrantID,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return job, ErrGuarded
		}
		return job, err
	}
	if tx == nil {
		return insert(q)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return queries.Job{}, err
	}
	job, err := insert(q.WithTx(sp))
	if err != nil {
		_ = sp.Rollback(ctx)
		return job, err
	}
	return job, sp.Commit(ctx)
}

// params are the job row's columns for args and req.
func (c *Client) params(args Args, req Request) (queries.InsertJobParams, error) {
	payload, err := json.Marshal(args)
	if err != nil {
		return queries.InsertJobParams{}, fmt.Errorf("encode %s args: %w", args.Kind(), err)
	}
	o := insertOpts(args)
	id := req.JobID
	if id == uuid.Nil {
		id = uuid.New()
	}
	params := queries.InsertJobParams{
		ID:             id,
		Kind:           args.Kind(),
		Queue:          o.Queue,
		TeamID:         req.TeamID,
		ServiceID:      nullUUID(req.ServiceID),
		Mutating:       o.Mutating && req.ServiceID != uuid.Nil,
		Status:         StatusQueued,
		Args:           payload,
		MaxAttempts:    int32(o.MaxAttempts),
		TimeoutSeconds: int32(o.Timeout / time.Second),
		RequestHash:    req.RequestHash,
		ApiKeyID:       nullUUID(req.APIKeyID),
		RequestedBy:    req.RequestedBy,
		PersonID:       nullUUID(req.PersonID),
		GrantID:        nullUUID(req.GrantID),
	}
	if req.IdempotencyKey != "" {
		params.IdempotencyKey = &req.IdempotencyKey
	}
	if req.RunAt.After(time.Now()) {
		params.Status, params.RunAt = StatusScheduled, &req.RunAt
	}
	if req.Secrets != nil {
		if params.SealedSecrets, err = c.Sealer.Seal(params.ID, req.Secrets); err != nil {
			return params, err
		}
	}
	return params, nil
}

func (c *Client) byIdempotencyKey(ctx context.Context, q *queries.Queries, req Request) (queries.Job, error) {
	job, err := q.GetJobByIdempotencyKey(ctx, queries.GetJobByIdempotencyKeyParams{
		TeamID: req.TeamID, IdempotencyKey: &req.IdempotencyKey,
	})
	if err != nil {
		return queries.Job{}, err
	}
	if !bytes.Equal(job.RequestHash, req.RequestHash) {
		return queries.Job{}, ErrIdempotencyKeyReused
	}
	return job, nil
}

// Enqueue puts the job's task on its queue. Enqueueing a job whose task
// exists already is not an error, so the sweeper may call it freely.
func (c *Client) Enqueue(ctx context.Context, job queries.Job) error {
	// A job put back after its task was lost keeps the attempts it used;
	// the one a lost task cut short is not held against it.
	used := job.Attempts
	if job.Status == StatusRunning {
		used--
	}
	left := max(int(job.MaxAttempts-used), 1)
	opts := []asynq.Option{
		asynq.TaskID(job.ID.String()),
		asynq.Queue(job.Queue),
		asynq.MaxRetry(left - 1),
		asynq.Timeout(time.Duration(job.TimeoutSeconds) * time.Second),
	}
	if c.retention > 0 {
		opts = append(opts, asynq.Retention(c.retention))
	}
	if job.RunAt != nil && job.RunAt.After(time.Now()) {
		opts = append(opts, asynq.ProcessAt(*job.RunAt))
	}
	_, err := c.tasks.EnqueueContext(ctx, asynq.NewTask(job.Kind, job.Args), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}
