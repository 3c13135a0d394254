package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/monitoring/metrics"
	"github.com/hostfleet/provisiond/queries"
)

// Workers routes tasks to the Worker of their kind and keeps the job row in
// step with every attempt.
type Workers struct {
	q       *queries.Queries
	metrics *metrics.Metrics
	log     *slog.Logger
	// kinds maps a job kind to its worker, and tasks a task type that is
	// not a job to its handler, both matched exactly: asynq's own ServeMux
	// falls back to the longest registered prefix, which would run a
	// vps.backup.delete as a vps.backup in a worker that lacks the first.
	kinds map[string]func(ctx context.Context, a *attempt, payload []byte) error
	tasks map[string]asynq.Handler
	// Sealer opens jobs' sealed secrets.
	Sealer *Sealer
}

// NewWorkers returns an empty set of workers.
func NewWorkers(q *queries.Queries, m *metrics.Metrics, log *slog.Logger) *Workers {
	return &Workers{q: q, metrics: m, log: log, kinds: map[string]func(context.Context, *attempt, []byte) error{},
		tasks: map[string]asynq.Handler{}, Sealer: &Sealer{}}
}

// Handler is the asynq handler that serves every added kind.
func (ws *Workers) Handler() asynq.Handler { return asynq.HandlerFunc(ws.route) }

// ErrNoWorker is returned for a task whose type no worker of this process
// carries out (a kind newer than this process, during a rolling deploy):
// asynq puts it back without counting an attempt, for a worker that has it.
var ErrNoWorker = errors.New("no worker for this task type in this process")

// route hands a task to the worker or handler of exactly its type.
func (ws *Workers) route(ctx context.Context, t *asynq.Task) error {
	if h, ok := ws.tasks[t.Type()]; ok {
		return h.ProcessTask(ctx, t)
	}
	if _, ok := ws.kinds[t.Type()]; !ok {
		ws.log.Warn("task of a type this process has no worker for; left for another", "kind", t.Type())
		return fmt.Errorf("%w: %s", ErrNoWorker, t.Type())
	}
	taskID, _ := asynq.GetTaskID(ctx)
	id, err := uuid.Parse(taskID)
	if err != nil {
		ws.log.Warn("task id is not a job id; dropped", "job_id", taskID, "kind", t.Type())
		return nil
	}
	return ws.process(ctx, id, t.Type(), t.Payload())
}

// Work runs one attempt of the recorded job as a delivery of its task
// does: the row moves to running, the kind's worker runs, and the outcome
// is recorded. It returns what asynq would be told (nil once the job has
// ended). Tests drive workers through it (see jobs/worktest).
func (ws *Workers) Work(ctx context.Context, job queries.Job) error {
	if _, ok := ws.kinds[job.Kind]; !ok {
		return fmt.Errorf("%w: %s", ErrNoWorker, job.Kind)
	}
	return ws.process(ctx, job.ID, job.Kind, job.Args)
}

// HandleTask registers h for tasks of a type that are not jobs (no job
// row): periodic housekeeping such as monitoring rounds.
func (ws *Workers) HandleTask(taskType string, h asynq.HandlerFunc) { ws.tasks[taskType] = h }

// AddWorker registers w as the worker of T's kind. T must be a value type
// (not a pointer) whose zero value answers Kind.
func AddWorker[T Args](ws *Workers, w Worker[T]) {
	var zero T
	kind := zero.Kind()
	ws.kinds[kind] = func(ctx context.Context, a *attempt, payload []byte) error {
		var args T
		if err := json.Unmarshal(payload, &args); err != nil {
			return &failure.Error{Class: failure.Permanent, Provider: "provisiond", Op: kind,
				Message: "malformed job arguments", Err: err}
		}
		return w.Work(ctx, &Job[T]{Row: a.row, Service: a.service, Args: args, Log: a.log, Run: a.run})
	}
}

// attempt is what process hands to a kind's worker.
type attempt struct {
	row     queries.Job
	service *queries.Service
	log     *slog.Logger
	run     *Run
}

// process runs one delivery of a task: it moves the job to running, runs the
// worker, and records the outcome. The return value tells asynq whether to
// retry: nil when the job ended (or must not run), the error for a retry, and
// an error wrapping asynq.SkipRetry when retrying cannot help.
func (ws *Workers) process(ctx context.Context, id uuid.UUID, kind string, payload []byte) error {
	log := ws.log.With("job_id", id, "kind", kind)
	row, err := ws.q.StartJobAttempt(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return ws.drop(ctx, id, log)
	}
	if err != nil {
		return fmt.Errorf("start job %s: %w", id, err)
	}
	a := &attempt{row: row, log: log}
	if row.ServiceID.Valid {
		svc, err := ws.q.GetService(ctx, row.ServiceID.UUID)
		if err != nil {
			return ws.finish(ctx, a, time.Now(), fmt.Errorf("load service %s: %w", row.ServiceID.UUID, err))
		}
		a.service = &svc
		a.log = log.With("service_id", svc.ID, "provider", svc.Provider)
	}
	a.log = a.log.With("attempt", row.Attempts)
	ws.metrics.JobStarted(row.Kind)
	start := time.Now()
	stopBeat := ws.beat(ctx, row, a.log)
	defer stopBeat()
	a.run, err = newRun(ws.q, row, a.log, ws.Sealer)
	if err == nil && row.CancelRequestedAt != nil && row.Step == "" {
		// Nothing done yet: nothing to undo either.
		err = ErrCancelled
	} else if err == nil {
		// A job that ran before meets the cancellation at its next step, and
		// its worker puts back what it changed (a VM it powered off).
		a.log.Info("job attempt started", "step", row.Step)
		err = ws.kinds[kind](ctx, a, payload)
	}
	return ws.finish(ctx, a, start, err)
}

// beatInterval is how often a running attempt says it is alive; the
// sweeper's grace (SWEEP_GRACE) must be several times longer.
const beatInterval = 20 * time.Second

// beat marks the attempt alive every beatInterval until the returned stop
// is called, so that the sweeper never puts back a job a live worker still
// carries out (a 4-hour vzdump changes nothing else in its row).
func (ws *Workers) beat(ctx context.Context, row queries.Job, log *slog.Logger) (stop func()) {
	return every(ctx, beatInterval, func(ctx context.Context) {
		if _, err := ws.q.BeatJobAttempt(ctx, queries.BeatJobAttemptParams{ID: row.ID, Attempts: row.Attempts}); err != nil && ctx.Err() == nil {
			log.Warn("could not mark the attempt alive", "err", err)
		}
	})
}

// every calls fn every d, in its own goroutine and on a context that ctx's
// cancellation does not end, until the returned stop is called; stop
// returns once fn has returned for the last time.
func every(ctx context.Context, d time.Duration, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			fn(ctx)
		}
	}()
	return func() { cancel(); <-done }
}

// drop handles a delivery whose job may not run: it has ended, its row is
// gone, or it was moved later and this is its old task, which comes back
// at the new time (the move could not replace it: Redis was away).
func (ws *Workers) drop(ctx context.Context, id uuid.UUID, log *slog.Logger) error {
	job, err := ws.q.GetJob(ctx, id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		log.Warn("task has no job row; dropped")
		return nil
	case err != nil:
		return fmt.Errorf("load job %s: %w", id, err)
	case !Finished(job.Status) && job.RunAt != nil && job.RunAt.After(time.Now()):
		log.Info("job was moved later; its task comes back then", "run_at", job.RunAt)
		return &SnoozeError{After: time.Until(*job.RunAt), Reason: "moved to " + job.RunAt.UTC().Format(time.RFC3339)}
	}
	log.Info("job has ended already; delivery dropped", "status", job.Status)
	return nil
}

// finish records the attempt's outcome in the job row.
func (ws *Workers) finish(ctx context.Context, a *attempt, start time.Time, err error) error {
	// The attempt's context may be cancelled already; the record must still
	// be written.
	db, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	row := a.row
	outcome, ret := ws.outcome(db, ctx, a, err)
	ws.metrics.JobFinished(row.Kind, outcome, time.Since(start))
	log := a.log.With("outcome", outcome, "duration", time.Since(start).Round(time.Millisecond))
	if err != nil {
		log = log.With("err", err)
	}
	switch outcome {
	case StatusSucceeded:
		log.Info("job succeeded")
	case StatusFailed:
		log.Error("job failed")
	default:
		log.Warn("job attempt ended", "step", a.stepName())
	}
	return ret
}

func (a *attempt) stepName() string {
	if a.run == nil {
		return a.row.Step
	}
	return a.run.Step()
}

// outcome decides what the attempt's end means, writes it, and returns the
// outcome label and the error for asynq.
func (ws *Workers) outcome(db, ctx context.Context, a *attempt, err error) (string, error) {
	row := a.row
	finish := func(status, msg string, result, secret any) error {
		var res, sealed []byte
		if result != nil {
			var mErr error
			if res, mErr = json.Marshal(result); mErr != nil {
				return mErr
			}
		}
		if secret != nil {
			var sErr error
			if sealed, sErr = ws.Sealer.Seal(row.ID, secret); sErr != nil {
				return sErr
			}
		}
		_, fErr := ws.q.FinishJobAttempt(db, queries.FinishJobAttemptParams{
			ID: row.ID, Attempts: row.Attempts, Status: status, Error: msg, Result: res, SealedResult: sealed,
		})
		if errors.Is(fErr, pgx.ErrNoRows) {
			return errSuperseded
		}
		return fErr
	}
	retrying := func(msg string) error {
		_, rErr := ws.q.RetryJobAttempt(db, queries.RetryJobAttemptParams{ID: row.ID, Attempts: row.Attempts, Error: msg})
		return rErr
	}

	if err == nil {
		var result, secret any
		if a.run != nil {
			result, secret = a.run.result, a.run.secretResult
		}
		if fErr := finish(StatusSucceeded, "", result, secret); fErr != nil {
			// The provider work is done; a retry resumes after the last
			// checkpoint and only has to record the end.
			return "retrying", fmt.Errorf("record success: %w", fErr)
		}
		return StatusSucceeded, nil
	}
	if errors.Is(err, errSuperseded) {
		return "superseded", nil
	}
	committed := a.run != nil && a.run.Committed()
	// A cancellation that cut a step short is not recorded here: asynq
	// delivers the task again at once, and that attempt meets the
	// cancellation between steps, where its worker can put back what the
	// job changed. One that came before any step ends the job now.
	if errors.Is(err, ErrCancelled) || (ctx.Err() != nil && a.stepName() == "" && ws.cancelRequested(db, row.ID)) {
		msg := "cancelled before it started"
		if s := a.stepName(); s != "" {
			msg = "cancelled at step " + s
		}
		if se := (*StoppedError)(nil); errors.As(err, &se) {
			msg += "; " + se.Condition
		}
		if fErr := finish(StatusCancelled, msg, nil, nil); fErr != nil && !errors.Is(fErr, errSuperseded) {
			return StatusCancelled, fmt.Errorf("record cancellation: %w", fErr)
		}
		return StatusCancelled, nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The worker is shutting down (or lost its lease); asynq requeues the
		// task and the next attempt resumes from the checkpoint.
		if rErr := retrying("interrupted at step " + a.stepName() + "; it will resume"); rErr != nil {
			return "interrupted", fmt.Errorf("%w (and recording the interruption failed: %w)", err, rErr)
		}
		return "interrupted", err
	}
	if snooze := (*SnoozeError)(nil); errors.As(err, &snooze) {
		if _, sErr := ws.q.SnoozeJobAttempt(db, queries.SnoozeJobAttemptParams{ID: row.ID, Attempts: row.Attempts, Error: snooze.Reason}); sErr != nil {
			return "snoozed", fmt.Errorf("%w (and recording the wait failed: %w)", err, sErr)
		}
		return "snoozed", err
	}
	msg := failure.UserMessage(err)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg = fmt.Sprintf("attempt timed out after %ds at step %s", row.TimeoutSeconds, a.stepName())
	}
	failed := func(ret error) (string, error) {
		attempt := pgtype.Int4{Int32: row.Attempts, Valid: true}
		if fErr := failJob(db, ws.q, row, attempt, a.stepName(), msg, committed || errors.Is(err, ErrNeedsRepair)); fErr != nil && !errors.Is(fErr, pgx.ErrNoRows) {
			return StatusFailed, fmt.Errorf("record failure of %w: %w", err, fErr)
		}
		return StatusFailed, ret
	}
	if failure.IsPermanent(err) {
		return failed(fmt.Errorf("%w: %w", err, asynq.SkipRetry))
	}
	retried, ok := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if !ok {
		// Not delivered by asynq (Workers.Work): the row counts.
		retried, maxRetry = int(row.Attempts)-1, int(row.MaxAttempts)-1
	}
	if retried >= maxRetry {
		return failed(err)
	}
	if rErr := retrying(msg); rErr != nil {
		return "retrying", fmt.Errorf("%w (and recording the retry failed: %w)", err, rErr)
	}
	return "retrying", err
}

// failJob records a job's failure: of one running attempt, or (attempt
// not valid) of the job whatever its state. When the job left its service
// half-made or found it not its own (repair), the same write marks the
// service needs_repair with the reason, so that the API shows it and a
// repair job can be started. A termination is not repaired: the service is
// ending, and a failed termination is the operators' to look at (the job's
// error says why).
func failJob(ctx context.Context, q *queries.Queries, job queries.Job, attempt pgtype.Int4, step, msg string, repair bool) error {
	var reason string
	if repair && job.ServiceID.Valid && job.Kind != (TerminationArgs{}).Kind() {
		reason = fmt.Sprintf("%s job %s failed at step %s: %s", job.Kind, job.ID, step, msg)
	}
	_, err := q.FailJob(ctx, queries.FailJobParams{ID: job.ID, Attempts: attempt, Error: msg, RepairReason: reason})
	return err
}

func (ws *Workers) cancelRequested(ctx context.Context, id uuid.UUID) bool {
	yes, err := ws.q.JobCancelRequested(ctx, id)
	return err == nil && yes
}

// ServerConfig configures a worker process.
type ServerConfig struct {
	// Concurrency is how many jobs one process runs at once. Waiting on a
	// provider is a goroutine, so this can be in the thousands.
	Concurrency int
	// Queues maps queue names to weights.
	Queues map[string]int
	Retry  RetryPolicy
	// ShutdownTimeout is how long running jobs get to finish on SIGTERM
	// before their tasks are put back for another worker.
	ShutdownTimeout time.Duration
}

// DefaultQueues weighs critical work six times and default work three times
// as often as low-priority work.
var DefaultQueues = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}

// NewServer returns an asynq server for the config.
func NewServer(redis asynq.RedisConnOpt, cfg ServerConfig, log *slog.Logger) *asynq.Server {
	queues := cfg.Queues
	if len(queues) == 0 {
		queues = DefaultQueues
	}
	return asynq.NewServer(redis, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          queues,
		RetryDelayFunc:  cfg.Retry.RetryDelayFunc(),
		ShutdownTimeout: cfg.ShutdownTimeout,
		// asynq's default of 5 s would start a retry due in 2 s up to 5 s
		// late; the check is one cheap Redis script per second.
		DelayedTaskCheckInterval: time.Second,
		Logger:                   asynqLogger{log.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
		// A permanent failure is archived at once; it is no sign of an
		// unhealthy queue, but it is a failure for the stats all the same.
		IsFailure: func(err error) bool {
			var snooze *SnoozeError
			return !errors.Is(err, context.Canceled) && !errors.Is(err, ErrNoWorker) && !errors.As(err, &snooze)
		},
	})
}

// AsynqLogger returns a logger for asynq's servers and schedulers that
// sends asynq's own lines through l.
func AsynqLogger(l *slog.Logger) asynq.Logger { return asynqLogger{l} }

// asynqLogger sends asynq's own log lines through slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...))
	os.Exit(1)
}
