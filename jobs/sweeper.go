package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hostfleet/provisiond/queries"
)

// Sweeper keeps job rows and their tasks from drifting apart. A job left
// queued without a task (the API stopped between the insert and the enqueue)
// is enqueued again; a job whose task is gone while it ran, waited for a
// retry or for its time (Redis lost its data, was flushed or failed over)
// is put back to resume from its checkpoint with the attempts it has left;
// a job whose task was archived while the row still says it runs is marked
// failed, so no job waits forever.
type Sweeper struct {
	Queries   *queries.Queries
	Inspector *asynq.Inspector
	Client    *Client
	// Grace is how long a job may stay unchanged before it is checked; it
	// must cover the time between the insert and the enqueue.
	Grace time.Duration
	// Batch bounds how many jobs one sweep checks.
	Batch int
	Log   *slog.Logger
	// Observer, when set, is told of every sweep, so that operators see
	// that the scheduler runs.
	Observer interface {
		ObserveSweep(enqueued, resumed, failed, terminations int, err error)
		// ObserveResume is told how long a resumed job's task had been
		// gone at most: since the job last changed.
		ObserveResume(kind string, lost time.Duration)
	}
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Checked, Enqueued, Failed int
	// Resumed counts jobs put back after their task was lost.
	Resumed int
	// ConsoleSessions counts the long-expired console sessions removed.
	ConsoleSessions int64
	// Terminations counts scheduled terminations put back in the queue
	// because Redis had lost them.
	Terminations int
}

// Sweep checks the jobs that have not changed for Grace once, and removes
// console sessions that expired a day ago.
func (s *Sweeper) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	batch := s.Batch
	if batch <= 0 {
		batch = 500
	}
	rows, err := s.Queries.ListUnfinishedJobs(ctx, queries.ListUnfinishedJobsParams{
		UnchangedSince: time.Now().Add(-s.Grace), MaxJobs: int32(batch),
	})
	if err != nil {
		return res, fmt.Errorf("list unfinished jobs: %w", err)
	}
	var firstErr error
	for _, job := range rows {
		res.Checked++
		outcome, err := s.check(ctx, job)
		if err != nil {
			// One job that cannot be checked (its queue unreadable) does not
			// hold up the others; it is marked swept and comes back later.
			s.Log.Error("job not swept", "job_id", job.ID, "kind", job.Kind, "err", err)
			firstErr = cmp.Or(firstErr, err)
		}
		switch outcome {
		case "enqueued":
			res.Enqueued++
		case "resumed":
			res.Resumed++
		case "failed":
			res.Failed++
		}
		if err := s.Queries.MarkJobSwept(ctx, job.ID); err != nil {
			return res, fmt.Errorf("mark job swept: %w", err)
		}
	}
	if res.Terminations, err = s.reconcileTerminations(ctx); err != nil {
		return res, err
	}
	if firstErr != nil {
		return res, firstErr
	}
	if res.ConsoleSessions, err = s.Queries.DeleteExpiredConsoleSessions(ctx); err != nil {
		return res, fmt.Errorf("delete expired console sessions: %w", err)
	}
	return res, nil
}

func (s *Sweeper) check(ctx context.Context, job queries.Job) (string, error) {
	log := s.Log.With("job_id", job.ID, "kind", job.Kind, "service_id", job.ServiceID.UUID, "status", job.Status)
	info, err := s.Inspector.GetTaskInfo(job.Queue, job.ID.String())
	if err == nil && info.State == asynq.TaskStateCompleted {
		// The task was acknowledged for a delivery whose attempt was
		// superseded while the row still runs: it is as good as lost.
		if derr := s.Inspector.DeleteTask(job.Queue, job.ID.String()); derr != nil && !errors.Is(derr, asynq.ErrTaskNotFound) {
			return "", fmt.Errorf("delete the completed task of unfinished job %s: %w", job.ID, derr)
		}
		err = asynq.ErrTaskNotFound
	}
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		if err := s.Client.Enqueue(ctx, job); err != nil {
			return "", fmt.Errorf("re-enqueue job %s: %w", job.ID, err)
		}
		if job.Status == StatusQueued || job.Status == StatusScheduled {
			log.Warn("waiting job had no task; enqueued again")
			return "enqueued", nil
		}
		// Our own infrastructure lost it: it resumes from its checkpoint.
		log.Warn("job's task was lost; put back to resume from its checkpoint", "step", job.Step, "attempts", job.Attempts)
		if s.Observer != nil {
			s.Observer.ObserveResume(job.Kind, time.Since(job.UpdatedAt))
		}
		return "resumed", nil
	case err != nil:
		return "", fmt.Errorf("inspect task of job %s: %w", job.ID, err)
	case info.State == asynq.TaskStateArchived && info.LastErr == asynq.ErrLeaseExpired.Error():
		// Archived because the workers that held it died (a lost lease
		// counts as a retry in asynq): our infrastructure failed, not the
		// provider, so the job resumes from its checkpoint.
		if derr := s.Inspector.DeleteTask(job.Queue, job.ID.String()); derr != nil && !errors.Is(derr, asynq.ErrTaskNotFound) {
			return "", fmt.Errorf("delete the archived task of job %s: %w", job.ID, derr)
		}
		if err := s.Client.Enqueue(ctx, job); err != nil {
			return "", fmt.Errorf("re-enqueue job %s: %w", job.ID, err)
		}
		log.Warn("job's task was archived after its workers died; put back to resume from its checkpoint", "step", job.Step, "attempts", job.Attempts)
		if s.Observer != nil {
			s.Observer.ObserveResume(job.Kind, time.Since(job.UpdatedAt))
		}
		return "resumed", nil
	case info.State == asynq.TaskStateArchived:
		msg := "the job's task was archived"
		if info.LastErr != "" {
			msg += ": " + info.LastErr
		}
		return s.fail(ctx, log, job, msg)
	}
	return "", nil
}

// committed reports whether the job passed its point of no return.
func committed(job queries.Job) bool {
	var cp Checkpoint
	return json.Unmarshal(job.Checkpoint, &cp) == nil && cp.Committed
}

func (s *Sweeper) fail(ctx context.Context, log *slog.Logger, job queries.Job, msg string) (string, error) {
	if err := failJob(ctx, s.Queries, job, pgtype.Int4{}, job.Step, msg, committed(job)); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("fail job %s: %w", job.ID, err)
	}
	log.Error("job failed by the sweeper", "reason", msg)
	return "failed", nil
}

// Run sweeps every interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := s.Sweep(ctx)
		if s.Observer != nil && ctx.Err() == nil {
			s.Observer.ObserveSweep(res.Enqueued, res.Resumed, res.Failed, res.Terminations, err)
		}
		if err != nil && ctx.Err() == nil {
			s.Log.Error("sweep failed", "err", err)
		} else if res.Enqueued+res.Failed > 0 {
			s.Log.Info("sweep done", "checked", res.Checked, "enqueued", res.Enqueued, "failed", res.Failed)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcileTerminations makes every scheduled termination in the database
// a job row and a task in asynq, so that a Redis that lost its data still
// terminates on time; a withdrawn one has no row left to act on.
func (s *Sweeper) reconcileTerminations(ctx context.Context) (int, error) {
	svcs, err := s.Queries.ListScheduledTerminations(ctx)
	if err != nil {
		return 0, fmt.Errorf("list scheduled terminations: %w", err)
	}
	n := 0
	for _, svc := range svcs {
		if svc.TerminateAt == nil {
			continue
		}
		id := svc.TerminationJobID.UUID
		job, err := s.Queries.GetJob(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			// The cancellation and its job are one transaction now (see
			// service.Services.Cancel); one recorded before that may lack
			// its job, which is recorded here, once (its id is derived).
			if job, _, err = s.Client.Insert(ctx, TerminationArgs{ServiceID: svc.ID, Generation: svc.CancellationGeneration},
				Request{TeamID: svc.TeamID, ServiceID: svc.ID, RequestedBy: "scheduler", JobID: id, RunAt: *svc.TerminateAt}); err != nil {
				s.Log.Error("termination job of a cancellation not recorded", "service_id", svc.ID, "job_id", id, "err", err)
				continue
			}
			s.Log.Warn("cancellation without its termination job; recorded", "service_id", svc.ID, "job_id", id)
			n++
			continue
		}
		if err != nil {
			return n, err
		}
		if job.Status != StatusScheduled && job.Status != StatusQueued && job.Status != StatusRetrying {
			continue
		}
		_, err = s.Inspector.GetTaskInfo(job.Queue, id.String())
		if !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err := s.Client.Enqueue(ctx, job); err != nil {
			return n, fmt.Errorf("enqueue termination of %s: %w", svc.ID, err)
		}
		s.Log.Warn("scheduled termination was missing from the queue; enqueued again", "service_id", svc.ID, "job_id", id, "at", svc.TerminateAt)
		n++
	}
	return n, nil
}
