// Package jobs records, enqueues and carries out the fleet's long-running
// work.
//
// A job is a row in PostgreSQL, the record that users and operators see, and
// an asynq task in Redis whose task id is the job id, the thing a worker picks
// up. Each job kind has typed arguments implementing Args and exactly one
// Worker. A Worker does its work as named steps through the Run embedded in
// its Job: each finished step is checkpointed in the job row, so that a retry,
// or another worker after a crash, resumes after the last finished step.
package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/queries"
)

// Queues, from most to least urgent. Power and console work must not wait
// behind an hour of backups.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// Job statuses as stored in jobs.status.
const (
	StatusQueued    = "queued"
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusRetrying  = "retrying"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Finished reports whether a job in this status will not change again.
func Finished(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCancelled
}

// Args are a job kind's typed arguments. They are stored in the job row and
// sent as the task payload, so they must never hold a secret.
type Args interface {
	// Kind names the job kind, e.g. "service.power". It is the asynq task type.
	Kind() string
}

// InsertOpts are a kind's defaults for new jobs.
type InsertOpts struct {
	// Queue is one of QueueCritical, QueueDefault, QueueLow.
	Queue string
	// MaxAttempts bounds how often the job is tried in all.
	MaxAttempts int
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Mutating jobs hold their service: while one is queued or running, a
	// second mutating job on the same service is refused.
	Mutating bool
}

// ArgsWithInsertOpts is implemented by Args whose kind needs other defaults
// than DefaultInsertOpts.
type ArgsWithInsertOpts interface {
	Args
	InsertOpts() InsertOpts
}

// DefaultInsertOpts apply to kinds that say nothing else.
var DefaultInsertOpts = InsertOpts{Queue: QueueDefault, MaxAttempts: 10, Timeout: 30 * time.Minute, Mutating: true}

func insertOpts(args Args) InsertOpts {
	o := DefaultInsertOpts
	if a, ok := args.(ArgsWithInsertOpts); ok {
		o = a.InsertOpts()
		if o.Queue == "" {
			o.Queue = DefaultInsertOpts.Queue
		}
		if o.MaxAttempts <= 0 {
			o.MaxAttempts = DefaultInsertOpts.MaxAttempts
		}
		if o.Timeout <= 0 {
			o.Timeout = DefaultInsertOpts.Timeout
		}
	}
	return o
}

// Job is one attempt at a job, as its Worker sees it.
type Job[T Args] struct {
	// Row is the job as it was when this attempt started.
	Row queries.Job
	// Service is the job's service, nil for jobs without one.
	Service *queries.Service
	Args    T
	// Log carries the job id, kind, service id and provider on every line.
	Log *slog.Logger
	*Run
}

// OpenSecrets decodes the job's sealed secrets into v. It reports false when
// the job has none: they are dropped once the job ends.
func (j *Job[T]) OpenSecrets(v any) (bool, error) {
	if len(j.Row.SealedSecrets) == 0 {
		return false, nil
	}
	if err := j.Run.sealer.Open(j.Row.ID, j.Row.SealedSecrets, v); err != nil {
		return false, &failure.Error{Class: failure.Permanent, Provider: "provisiond", Op: "secrets",
			Message: "the job's secrets cannot be opened", Err: err}
	}
	return true, nil
}

// Worker carries out one kind of job.
type Worker[T Args] interface {
	Work(ctx context.Context, job *Job[T]) error
}

// WorkFunc adapts a function to a Worker.
type WorkFunc[T Args] func(ctx context.Context, job *Job[T]) error

// Work calls f.
func (f WorkFunc[T]) Work(ctx context.Context, job *Job[T]) error { return f(ctx, job) }

// ErrCancelled ends a job that was asked to stop. The runner returns it at
// the first safe point after a cancellation request.
var ErrCancelled = errors.New("job cancelled")

// StoppedError is returned by a worker whose job stopped before its end
// (cancelled, or interrupted), saying what condition it left the provider's
// object in; a cancelled job records it.
type StoppedError struct {
	Err       error
	Condition string
}

func (e *StoppedError) Error() string { return e.Err.Error() + " (" + e.Condition + ")" }

// Unwrap returns the error that stopped the job.
func (e *StoppedError) Unwrap() error { return e.Err }

// uuidOf returns the id as a nullable uuid.
func nullUUID(id uuid.UUID) uuid.NullUUID { return uuid.NullUUID{UUID: id, Valid: id != uuid.Nil} }
