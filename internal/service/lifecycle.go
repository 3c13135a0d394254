package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// Cancellation "when"s.
const (
	Immediately        = "immediately"
	EndOfBillingPeriod = "end_of_billing_period"
)

// CancelWhens are the accepted "when"s of a cancellation.
var CancelWhens = []string{Immediately, EndOfBillingPeriod}

// Cancellation is a service with its cancellation's jobs.
type Cancellation struct {
	Service queries.Service
	// Termination is the job that terminates the service; nil when the
	// service has no cancellation.
	Termination *queries.Job
	// Suspension is the job that suspends the service now, when the
	// cancellation just made one.
	Suspension *queries.Job
	// Created is false when the service was cancelled already and this is
	// the first cancellation again.
	Created bool
}

// Cancel schedules the service's termination: after the grace period (and
// suspended now) for Immediately, at the billing period's end otherwise.
// The cancellation, its termination job and its suspension job are
// recorded in one transaction. A service cancelled already answers with its
// first cancellation.
func (s *Services) Cancel(ctx context.Context, svc queries.Service, when, reason string, by Actor) (Cancellation, error) {
	if svc.Status == "terminated" {
		return Cancellation{}, &Error{Code: Conflict, Key: "service_terminated", Message: "Service is terminated"}
	}
	var errs []string
	if !slices.Contains(CancelWhens, when) {
		errs = append(errs, "when must be one of: "+strings.Join(CancelWhens, ", "))
	}
	if len(reason) > 1000 {
		errs = append(errs, "cancellationReason must be at most 1000 characters")
	}
	if when == EndOfBillingPeriod && svc.BillingPeriodEnd == nil {
		errs = append(errs, "the service has no billing period end; cancel immediately or set one with renew")
	}
	if len(errs) > 0 {
		return Cancellation{}, invalid(errs...)
	}
	if svc.TerminationJobID.Valid {
		return s.cancellation(ctx, svc, nil, false)
	}
	now := s.now()
	at := now.Add(s.CancelGrace).UTC()
	if when == EndOfBillingPeriod {
		at = svc.BillingPeriodEnd.UTC()
		if at.Before(now) {
			at = now.UTC()
		}
	}
	gen := svc.CancellationGeneration + 1
	id := jobs.TerminationJobID(svc.ID, gen)
	var c Cancellation
	err := s.inTx(ctx, func(tx pgx.Tx, q *queries.Queries, record func(queries.Job)) error {
		updated, err := q.ScheduleTermination(ctx, queries.ScheduleTerminationParams{
			ID: svc.ID, CancelWhen: &when, Reason: reason, TerminateAt: &at, JobID: uuid.NullUUID{UUID: id, Valid: true},
		})
		if err != nil {
			return err
		}
		c = Cancellation{Service: updated, Created: true}
		req := by.request(svc)
		req.JobID, req.RunAt = id, at
		term, _, err := s.Jobs.InsertTx(ctx, tx, jobs.TerminationArgs{ServiceID: svc.ID, Generation: gen}, req)
		if err != nil {
			return fmt.Errorf("record termination: %w", err)
		}
		record(term)
		c.Termination = &term
		if when == Immediately {
			susp, err := s.cancellationPower(ctx, tx, svc, gen, "suspend", by)
			if err != nil {
				return err
			}
			record(susp)
			c.Suspension = &susp
		}
		return nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// Another cancel came first: its cancellation is the answer.
		if svc, err = s.Queries.GetService(ctx, svc.ID); err != nil {
			return Cancellation{}, err
		}
		return s.cancellation(ctx, svc, nil, false)
	}
	if err != nil {
		return Cancellation{}, err
	}
	s.Log.Info("service cancelled", "service_id", svc.ID, "provider", svc.Provider, "when", when, "terminate_at", at)
	return c, nil
}

// cancellation is the service's cancellation as it stands.
func (s *Services) cancellation(ctx context.Context, svc queries.Service, suspension *queries.Job, created bool) (Cancellation, error) {
	c := Cancellation{Service: svc, Suspension: suspension, Created: created}
	if svc.TerminationJobID.Valid {
		j, err := s.Queries.GetJob(ctx, svc.TerminationJobID.UUID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return c, err
		}
		if err == nil {
			c.Termination = &j
		}
	}
	return c, nil
}

// cancellationPower records, within tx, the job that suspends (or resumes)
// the service for its cancellation of generation, apart from any
// suspension for payment (see jobs.CancellationPower).
func (s *Services) cancellationPower(ctx context.Context, tx pgx.Tx, svc queries.Service, generation int32, action string, by Actor) (queries.Job, error) {
	args, id := jobs.CancellationPower(svc, generation, action)
	req := by.request(svc)
	req.JobID, req.RequestedBy = id, "cancellation"
	job, _, err := s.Jobs.InsertTx(ctx, tx, args, req)
	if err != nil {
		return job, fmt.Errorf("record the service's %s for its cancellation: %w", action, err)
	}
	return job, nil
}

// Withdraw removes a cancellation whose termination has not started, and
// resumes the service if its cancellation suspended it: the termination's
// cancellation, the service's and the resumption are one transaction.
func (s *Services) Withdraw(ctx context.Context, svc queries.Service, by Actor) (queries.Service, error) {
	if !svc.TerminationJobID.Valid || svc.Status == "terminated" {
		return svc, &Error{Code: Conflict, Key: "not_cancelled", Message: "The service has no cancellation to withdraw"}
	}
	var term *queries.Job
	var updated queries.Service
	err := s.inTx(ctx, func(tx pgx.Tx, q *queries.Queries, record func(queries.Job)) error {
		job, err := q.GetJob(ctx, svc.TerminationJobID.UUID)
		if err == nil && job.Status != jobs.StatusFailed && job.Status != jobs.StatusCancelled {
			cancelled, err := q.CancelWaitingJob(ctx, queries.CancelWaitingJobParams{ID: job.ID, Error: "the cancellation was withdrawn"})
			if errors.Is(err, pgx.ErrNoRows) {
				return &Error{Code: Conflict, Key: "termination_started", Message: "The termination has started and can no longer be withdrawn"}
			}
			if err != nil {
				return err
			}
			term = &cancelled
		} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if updated, err = q.ClearCancellation(ctx, svc.ID); err != nil {
			return err
		}
		if slices.Contains(svc.Suspensions, jobs.SuspendedForCancellation) {
			resume, err := s.cancellationPower(ctx, tx, svc, svc.CancellationGeneration, "resume", by)
			if err != nil {
				return err
			}
			record(resume)
		}
		return nil
	})
	if err != nil {
		return svc, err
	}
	if term != nil {
		s.deleteTask(*term, "cancellation withdrawn")
	}
	s.Log.Info("cancellation withdrawn", "service_id", svc.ID, "provider", svc.Provider)
	return updated, nil
}

// Renew moves the service's billing period end, and with it a termination
// scheduled for the end of the period and the releases of its IPs, in one
// transaction; the moved jobs' tasks are enqueued at their new time after
// it commits.
func (s *Services) Renew(ctx context.Context, svc queries.Service, end time.Time) (Cancellation, error) {
	if !end.After(s.now()) || (svc.BillingPeriodEnd != nil && !end.After(*svc.BillingPeriodEnd)) {
		return Cancellation{}, invalid("billingPeriodEnd must be later than now and than the current end")
	}
	end = end.UTC()
	var moved []queries.Job
	var updated queries.Service
	err := s.inTx(ctx, func(tx pgx.Tx, q *queries.Queries, record func(queries.Job)) error {
		moved = moved[:0]
		if svc.TerminationJobID.Valid && svc.CancelWhen != nil && *svc.CancelWhen == EndOfBillingPeriod {
			job, err := q.RescheduleJob(ctx, queries.RescheduleJobParams{ID: svc.TerminationJobID.UUID, RunAt: &end})
			if errors.Is(err, pgx.ErrNoRows) {
				return &Error{Code: Conflict, Key: "termination_started", Message: "The termination has started; the service can no longer be renewed"}
			}
			if err != nil {
				return err
			}
			moved = append(moved, job)
			if _, err := q.MoveTermination(ctx, queries.MoveTerminationParams{ID: svc.ID, TerminateAt: &end}); err != nil {
				return err
			}
		}
		releases, err := q.ListScheduledJobs(ctx, queries.ListScheduledJobsParams{ServiceID: nullID(svc.ID), Kind: jobs.ReleaseIPArgs{}.Kind()})
		if err != nil {
			return err
		}
		for _, job := range releases {
			j, err := q.RescheduleJob(ctx, queries.RescheduleJobParams{ID: job.ID, RunAt: &end})
			if errors.Is(err, pgx.ErrNoRows) {
				continue // it started meanwhile
			}
			if err != nil {
				return err
			}
			moved = append(moved, j)
		}
		updated, err = q.SetBillingPeriodEnd(ctx, queries.SetBillingPeriodEndParams{ID: svc.ID, BillingPeriodEnd: &end})
		return err
	})
	if err != nil {
		return Cancellation{}, err
	}
	for _, job := range moved {
		// The old task would come at the old time; the job, moved, would
		// snooze it, but the queue should show the new time.
		s.deleteTask(job, "job moved")
		s.Jobs.EnqueueRecorded(ctx, job)
	}
	return s.cancellation(ctx, updated, nil, false)
}

// IPRelease is a scheduled release of one of a VPS's additional IPs.
type IPRelease struct {
	Job queries.Job
	// Created is false when the release was scheduled already.
	Created bool
}

// ReleaseIP schedules the release of one of the service's additional IPs
// at the end of its billing period; asked again, it answers with the
// release scheduled already.
func (s *Services) ReleaseIP(ctx context.Context, svc queries.Service, ip string, by Actor) (IPRelease, error) {
	job, scheduled, err := s.scheduledRelease(ctx, svc, ip)
	if err != nil || scheduled {
		return IPRelease{Job: job}, err
	}
	if svc.BillingPeriodEnd == nil {
		return IPRelease{}, invalid("the service has no billing period end to release the address at")
	}
	req := by.request(svc)
	req.RunAt = *svc.BillingPeriodEnd
	job, _, err = s.Jobs.Insert(ctx, jobs.ReleaseIPArgs{ServiceID: svc.ID, IP: ip}, req)
	return IPRelease{Job: job, Created: true}, err
}

// KeepIP undoes the scheduled release of one of the service's additional
// IPs before it starts.
func (s *Services) KeepIP(ctx context.Context, svc queries.Service, ip string) (queries.Job, error) {
	job, scheduled, err := s.scheduledRelease(ctx, svc, ip)
	if err != nil {
		return job, err
	}
	if !scheduled {
		return job, &Error{Code: NotFound, Message: "Scheduled release of " + ip + " not found"}
	}
	cancelled, err := s.Queries.CancelWaitingJob(ctx, queries.CancelWaitingJobParams{ID: job.ID, Error: "the IP's cancellation was undone"})
	if errors.Is(err, pgx.ErrNoRows) {
		return job, &Error{Code: Conflict, Key: "release_started", Message: "The address is being released and can no longer be kept"}
	}
	if err != nil {
		return job, err
	}
	s.deleteTask(cancelled, "IP release undone")
	return cancelled, nil
}

// scheduledRelease finds the scheduled release of ip, which must be one of
// the service's additional IPs.
func (s *Services) scheduledRelease(ctx context.Context, svc queries.Service, ip string) (queries.Job, bool, error) {
	plan, err := jobs.ServicePlan(&svc)
	if err != nil {
		return queries.Job{}, false, err
	}
	if !slices.Contains(plan.AdditionalIPs, ip) {
		return queries.Job{}, false, &Error{Code: NotFound, Message: "Additional IP not found"}
	}
	job, err := s.Queries.FindScheduledJob(ctx, queries.FindScheduledJobParams{ServiceID: nullID(svc.ID), Kind: jobs.ReleaseIPArgs{}.Kind(), Arg: "ip", Value: ip})
	if errors.Is(err, pgx.ErrNoRows) {
		return job, false, nil
	}
	return job, err == nil, err
}

func nullID(id uuid.UUID) uuid.NullUUID { return uuid.NullUUID{UUID: id, Valid: true} }
