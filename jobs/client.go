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
}

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
	if req.IdempotencyKey != "" {
		job, err := c.byIdempotencyKey(ctx, req)
		if err == nil {
			return job, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return queries.Job{}, false, err
		}
	}
	payload, err := json.Marshal(args)
	if err != nil {
		return queries.Job{}, false, fmt.Errorf("encode %s args: %w", args.Kind(), err)
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
	}
	if req.IdempotencyKey != "" {
		params.IdempotencyKey = &req.IdempotencyKey
	}
	if req.RunAt.After(time.Now()) {
		params.Status, params.RunAt = StatusScheduled, &req.RunAt
	}
	if req.Secrets != nil {
		if params.SealedSecrets, err = c.Sealer.Seal(params.ID, req.Secrets); err != nil {
			return queries.Job{}, false, err
		}
	}
	job, err := c.q.InsertJob(ctx, params)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			switch pe.ConstraintName {
			case "jobs_pkey":
				// A derived job id asked for twice: the first job is the answer.
				job, err := c.q.GetJob(ctx, id)
				return job, err == nil, err
			case "jobs_idempotency":
				// The same key raced us; its job is the answer.
				job, err := c.byIdempotencyKey(ctx, req)
				return job, err == nil, err
			case "jobs_one_active_per_service":
				active, err := c.q.GetActiveServiceJob(ctx, nullUUID(req.ServiceID))
				if err != nil {
					return queries.Job{}, false, fmt.Errorf("find the job holding service %s: %w", req.ServiceID, err)
				}
				return queries.Job{}, false, &BusyError{Job: active}
			}
		}
		return queries.Job{}, false, fmt.Errorf("insert %s job: %w", args.Kind(), err)
	}
	if err := c.Enqueue(ctx, job); err != nil {
		c.log.Warn("job recorded but not enqueued; the sweeper will enqueue it",
			"job_id", job.ID, "kind", job.Kind, "service_id", job.ServiceID.UUID, "err", err)
	}
	return job, false, nil
}

func (c *Client) byIdempotencyKey(ctx context.Context, req Request) (queries.Job, error) {
	job, err := c.q.GetJobByIdempotencyKey(ctx, queries.GetJobByIdempotencyKeyParams{
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
