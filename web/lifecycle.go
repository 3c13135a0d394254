package web

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

var cancelWhens = []string{"immediately", "end_of_billing_period"}

// cancellationJSON is a service's cancellation as the API shows it.
func cancellationJSON(svc queries.Service) map[string]any {
	if !svc.TerminationJobID.Valid {
		return nil
	}
	return map[string]any{"when": svc.CancelWhen, "cancellationReason": svc.CancellationReason, "cancelledAt": svc.CancelledAt,
		"terminateAt": svc.TerminateAt, "terminationJobId": svc.TerminationJobID.UUID}
}

// cancelService schedules the service's termination: after the grace
// period (and suspended now) for "immediately", at the billing period's end
// otherwise. A second cancel answers with the first one's termination.
func (s *Server) cancelService(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	if svc.Status == "terminated" {
		return usable(svc)
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		When   string `json:"when"`
		Reason string `json:"cancellationReason"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	var errs []string
	if !slices.Contains(cancelWhens, req.When) {
		errs = append(errs, oneOf("when", cancelWhens))
	}
	if len(req.Reason) > 1000 {
		errs = append(errs, "cancellationReason must be at most 1000 characters")
	}
	if req.When == "end_of_billing_period" && svc.BillingPeriodEnd == nil {
		errs = append(errs, "the service has no billing period end; cancel immediately or set one with renew")
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	if svc.TerminationJobID.Valid {
		return s.answerCancellation(w, r, svc, http.StatusOK, nil)
	}
	now := s.now()
	at := now.Add(s.Config.CancelGrace).UTC()
	if req.When == "end_of_billing_period" {
		at = svc.BillingPeriodEnd.UTC()
		if at.Before(now) {
			at = now.UTC()
		}
	}
	gen := svc.CancellationGeneration + 1
	id := jobs.TerminationJobID(svc.ID, gen)
	updated, err := s.Queries.ScheduleTermination(r.Context(), queries.ScheduleTerminationParams{
		ID: svc.ID, CancelWhen: &req.When, Reason: req.Reason, TerminateAt: &at, JobID: nullServiceID(id),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// Another cancel came first.
		if svc, err = s.teamService(r); err != nil {
			return err
		}
		return s.answerCancellation(w, r, svc, http.StatusOK, nil)
	}
	if err != nil {
		return err
	}
	c := callerOf(r)
	by := "api key " + c.key.Prefix
	if _, _, err := s.Jobs.Insert(r.Context(), jobs.TerminationArgs{ServiceID: svc.ID, Generation: gen},
		jobs.Request{TeamID: svc.TeamID, ServiceID: svc.ID, APIKeyID: c.key.ID, RequestedBy: by, JobID: id, RunAt: at}); err != nil {
		// The scheduler records the job from the cancellation.
		s.logger(r).Error("termination job not recorded; the scheduler will", "service_id", svc.ID, "err", err)
	}
	var suspension *queries.Job
	if req.When == "immediately" {
		suspension = s.suspendFor(r, svc, gen, true)
	}
	s.logger(r).Info("service cancelled", "service_id", svc.ID, "when", req.When, "terminate_at", at)
	return s.answerCancellation(w, r, updated, http.StatusAccepted, suspension)
}

// suspendFor queues the service's suspension (or resumption) for its
// cancellation of generation, apart from any suspension for payment (see
// jobs.CancellationPower). It returns the job, or nil when it could not be
// recorded (logged; the sweeper records it from the cancellation).
func (s *Server) suspendFor(r *http.Request, svc queries.Service, generation int32, suspend bool) *queries.Job {
	action := "resume"
	if suspend {
		action = "suspend"
	}
	c := callerOf(r)
	args, id := jobs.CancellationPower(svc, generation, action)
	// The cancellation is recorded already: its suspension must be too,
	// however the client's request ends.
	job, _, err := s.Jobs.Insert(context.WithoutCancel(r.Context()), args,
		jobs.Request{TeamID: svc.TeamID, ServiceID: svc.ID, APIKeyID: c.key.ID, RequestedBy: "cancellation", JobID: id})
	if err != nil {
		s.logger(r).Error("could not queue the service's "+action+" for its cancellation; the scheduler will", "service_id", svc.ID, "err", err)
		return nil
	}
	return &job
}

// answerCancellation answers with the service, its cancellation, the
// termination job and, when the cancellation just queued one, the job that
// suspends the service (suspensionJob).
func (s *Server) answerCancellation(w http.ResponseWriter, r *http.Request, svc queries.Service, status int, suspension *queries.Job) error {
	var job, suspending any
	if svc.TerminationJobID.Valid {
		if j, err := s.Queries.GetJob(r.Context(), svc.TerminationJobID.UUID); err == nil {
			job = toJobJSON(j)
		}
	}
	if suspension != nil {
		suspending = toJobJSON(*suspension)
	}
	ok(w, status, "service", toServiceJSON(svc), "cancellation", cancellationJSON(svc), "job", job, "suspensionJob", suspending)
	return nil
}

// withdrawCancellation removes a termination that has not started, and
// resumes the service if its cancellation suspended it.
func (s *Server) withdrawCancellation(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	if !svc.TerminationJobID.Valid || svc.Status == "terminated" {
		return &apiError{Status: http.StatusConflict, ErrorKey: "not_cancelled", Message: "The service has no cancellation to withdraw"}
	}
	id := svc.TerminationJobID.UUID
	job, err := s.Queries.GetJob(r.Context(), id)
	if err == nil && job.Status != jobs.StatusFailed && job.Status != jobs.StatusCancelled {
		if _, err := s.Queries.CancelWaitingJob(r.Context(), queries.CancelWaitingJobParams{ID: id, Error: "the cancellation was withdrawn"}); errors.Is(err, pgx.ErrNoRows) {
			return &apiError{Status: http.StatusConflict, ErrorKey: "termination_started",
				Message: "The termination has started and can no longer be withdrawn"}
		} else if err != nil {
			return err
		}
		if derr := s.Inspector.DeleteTask(job.Queue, id.String()); derr != nil {
			s.logger(r).Info("termination task not deleted; its job will refuse to run", "job_id", id, "err", derr)
		}
	} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	updated, err := s.clearCancellation(r, svc)
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "service", toServiceJSON(updated))
	return nil
}

// clearCancellation forgets the service's cancellation once its termination
// job is cancelled, and resumes the service if the cancellation suspended it.
func (s *Server) clearCancellation(r *http.Request, svc queries.Service) (queries.Service, error) {
	updated, err := s.Queries.ClearCancellation(r.Context(), svc.ID)
	if err != nil {
		return updated, err
	}
	if slices.Contains(svc.Suspensions, jobs.SuspendedForCancellation) {
		s.suspendFor(r, svc, svc.CancellationGeneration, false)
	}
	s.logger(r).Info("cancellation withdrawn", "service_id", svc.ID)
	return updated, nil
}

// renew moves the service's billing period end, and with it a termination
// scheduled for the end of the period.
func (s *Server) renew(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	// A service that needs repair is still the customer's to pay for.
	if aerr := usable(svc); aerr != nil && svc.Status != "needs_repair" {
		return aerr
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		End string `json:"billingPeriodEnd"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	end, err := time.Parse(time.RFC3339, req.End)
	switch {
	case err != nil:
		return invalid("billingPeriodEnd must be an RFC 3339 time such as 2026-12-31T00:00:00Z")
	case !end.After(s.now()) || (svc.BillingPeriodEnd != nil && !end.After(*svc.BillingPeriodEnd)):
		return invalid("billingPeriodEnd must be later than now and than the current end")
	}
	end = end.UTC()
	moving := svc.TerminationJobID.Valid && svc.CancelWhen != nil && *svc.CancelWhen == "end_of_billing_period"
	if moving {
		job, err := s.Queries.RescheduleJob(r.Context(), queries.RescheduleJobParams{ID: svc.TerminationJobID.UUID, RunAt: &end})
		if errors.Is(err, pgx.ErrNoRows) {
			return &apiError{Status: http.StatusConflict, ErrorKey: "termination_started",
				Message: "The termination has started; the service can no longer be renewed"}
		}
		if err != nil {
			return err
		}
		if derr := s.Inspector.DeleteTask(job.Queue, job.ID.String()); derr != nil {
			s.logger(r).Info("old termination task not deleted; it will find the new time", "job_id", job.ID, "err", derr)
		}
		if err := s.Jobs.Enqueue(r.Context(), job); err != nil {
			s.logger(r).Warn("termination not enqueued again; the scheduler will", "job_id", job.ID, "err", err)
		}
		if _, err := s.Queries.MoveTermination(r.Context(), queries.MoveTerminationParams{ID: svc.ID, TerminateAt: &end}); err != nil {
			return err
		}
	}
	if err := s.moveIPReleases(r, svc, end); err != nil {
		return err
	}
	updated, err := s.Queries.SetBillingPeriodEnd(r.Context(), queries.SetBillingPeriodEndParams{ID: svc.ID, BillingPeriodEnd: &end})
	if err != nil {
		return err
	}
	return s.answerCancellation(w, r, updated, http.StatusOK, nil)
}

// ipCancellation schedules (POST) or undoes (DELETE) the release of one of
// the VPS's additional IPs at the end of its billing period.
func (s *Server) ipCancellation(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	var req struct {
		IP string `json:"ip"`
	}
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	if req.IP == "" {
		req.IP = r.URL.Query().Get("ip")
	}
	if _, err := netip.ParseAddr(req.IP); err != nil {
		return invalid("ip must be an IPv4 or IPv6 address")
	}
	plan, err := jobs.ServicePlan(&svc)
	if err != nil {
		return err
	}
	if !slices.Contains(plan.AdditionalIPs, req.IP) {
		return notFound("Additional IP")
	}
	kind := jobs.ReleaseIPArgs{}.Kind()
	job, err := s.Queries.FindScheduledJob(r.Context(), queries.FindScheduledJobParams{ServiceID: nullServiceID(svc.ID), Kind: kind, Arg: "ip", Value: req.IP})
	scheduled := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if r.Method == http.MethodDelete {
		if !scheduled {
			return notFound("Scheduled release of " + req.IP)
		}
		cancelled, err := s.Queries.CancelWaitingJob(r.Context(), queries.CancelWaitingJobParams{ID: job.ID, Error: "the IP's cancellation was undone"})
		if errors.Is(err, pgx.ErrNoRows) {
			return &apiError{Status: http.StatusConflict, ErrorKey: "release_started", Message: "The address is being released and can no longer be kept"}
		}
		if err != nil {
			return err
		}
		if derr := s.Inspector.DeleteTask(job.Queue, job.ID.String()); derr != nil {
			s.logger(r).Info("release task not deleted; its job will not run", "job_id", job.ID, "err", derr)
		}
		ok(w, http.StatusOK, "job", toJobJSON(cancelled))
		return nil
	}
	if scheduled {
		ok(w, http.StatusOK, "job", toJobJSON(job), "releaseAt", job.RunAt)
		return nil
	}
	if svc.BillingPeriodEnd == nil {
		return invalid("the service has no billing period end to release the address at")
	}
	c := callerOf(r)
	job, _, err = s.Jobs.Insert(r.Context(), jobs.ReleaseIPArgs{ServiceID: svc.ID, IP: req.IP},
		jobs.Request{TeamID: svc.TeamID, ServiceID: svc.ID, APIKeyID: c.key.ID, RequestedBy: "api key " + c.key.Prefix, RunAt: *svc.BillingPeriodEnd})
	if err != nil {
		return err
	}
	ok(w, http.StatusAccepted, "job", toJobJSON(job), "releaseAt", svc.BillingPeriodEnd.UTC())
	return nil
}

func nullServiceID(id uuid.UUID) uuid.NullUUID { return uuid.NullUUID{UUID: id, Valid: true} }

// moveIPReleases reschedules the service's IP releases to the new period end.
func (s *Server) moveIPReleases(r *http.Request, svc queries.Service, end time.Time) error {
	scheduled, err := s.Queries.ListScheduledJobs(r.Context(), queries.ListScheduledJobsParams{ServiceID: nullServiceID(svc.ID), Kind: jobs.ReleaseIPArgs{}.Kind()})
	if err != nil {
		return err
	}
	for _, job := range scheduled {
		moved, err := s.Queries.RescheduleJob(r.Context(), queries.RescheduleJobParams{ID: job.ID, RunAt: &end})
		if errors.Is(err, pgx.ErrNoRows) {
			continue // it started meanwhile
		}
		if err != nil {
			return err
		}
		if derr := s.Inspector.DeleteTask(moved.Queue, moved.ID.String()); derr != nil {
			s.logger(r).Info("old release task not deleted", "job_id", moved.ID, "err", derr)
		}
		if err := s.Jobs.Enqueue(r.Context(), moved); err != nil {
			return err
		}
	}
	return nil
}

// now is the API's clock: Config.Now, or the wall clock.
func (s *Server) now() time.Time {
	if s.Config.Now != nil {
		return s.Config.Now()
	}
	return time.Now()
}
