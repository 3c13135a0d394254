package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/queries"
)

// PowerArgs ask for a power action on a service.
type PowerArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Action is one of PowerActions.
	Action string `json:"action"`
	// Reason of a suspend or resume: SuspendedForPayment (the default) or
	// SuspendedForCancellation. The provider suspends for the first reason
	// and resumes when none is left.
	Reason string `json:"reason,omitempty"`
	// WaitForService queues the action behind the service's running job (a
	// cancellation's suspension during a 4-hour backup) instead of being
	// refused: such a job does not hold its service, and waits, without
	// spending attempts, until no other job does.
	WaitForService bool `json:"waitForService,omitempty"`
}

// Kind implements Args.
func (PowerArgs) Kind() string { return "service.power" }

// InsertOpts puts power actions on the critical queue: a customer waits for
// the button to work.
func (a PowerArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueCritical, MaxAttempts: 10, Timeout: 10 * time.Minute, Mutating: !a.WaitForService}
}

// PowerActions are the actions of POST /api/services/{id}/action. kill is
// a hard stop (for a VM, the same as stop).
var PowerActions = []string{"start", "stop", "restart", "reset", "kill", "suspend", "resume"}

// PowerResult is what a finished power job reports.
type PowerResult struct {
	Action     string `json:"action"`
	PowerState string `json:"powerState"`
}

// PowerWorker carries out power actions through the service's provider
// (a PowerController), after recording a suspension's reasons.
type PowerWorker struct {
	Queries   *queries.Queries
	Providers *Registry
}

// Work implements Worker.
func (w *PowerWorker) Work(ctx context.Context, job *Job[PowerArgs]) error {
	if job.Service == nil {
		return permanent(job.Args.Kind(), "power job has no service")
	}
	if job.Args.WaitForService {
		// It waits for the job holding the service, and for a power job
		// asked for before it (a withdrawal's resume for the cancellation's
		// suspend), so that the last one asked for decides.
		other, err := w.Queries.GetActiveServiceJob(ctx, nullUUID(job.Service.ID))
		if errors.Is(err, pgx.ErrNoRows) {
			other, err = w.Queries.EarlierUnfinishedJob(ctx, queries.EarlierUnfinishedJobParams{
				ServiceID: nullUUID(job.Service.ID), Kind: job.Args.Kind(), ID: job.Row.ID, CreatedAt: job.Row.CreatedAt})
		}
		if err == nil {
			return &SnoozeError{After: 15 * time.Second,
				Reason: fmt.Sprintf("waiting for job %s (%s) on the service to end", other.ID, other.Kind)}
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("look for the service's running job: %w", err)
		}
	}
	if job.Args.Reason == SuspendedForCancellation && !cancellationStands(job.Service, job.Args.Action) {
		// Queued behind another job, it comes after the cancellation was
		// withdrawn (a suspend) or came back (a resume): nothing to do.
		job.Log.Info("the cancellation changed while the job waited; nothing to do")
		job.SetResult(PowerResult{Action: job.Args.Action, PowerState: job.Service.PowerState})
		return nil
	}
	if a := job.Args.Action; a == "suspend" || a == "resume" {
		act, err := w.decideSuspension(ctx, job)
		if err != nil {
			return err
		}
		if !act {
			// Another reason keeps the service suspended, or it was
			// suspended already: the provider has nothing to do.
			job.SetResult(PowerResult{Action: a, PowerState: job.Service.PowerState})
			return nil
		}
	}
	p, ok := Capability[PowerController](w.Providers, job.Service.Provider)
	if !ok || !slices.Contains(p.PowerActions(), job.Args.Action) {
		return permanent(job.Args.Kind(), fmt.Sprintf("power action %s is not supported for %s services", job.Args.Action, job.Service.Provider))
	}
	return p.Power(ctx, job)
}

// recordPower records the power state and status a finished action left.
func recordPower(ctx context.Context, q *queries.Queries, job *Job[PowerArgs], state string) error {
	if state != "" {
		if err := q.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: job.Service.ID, PowerState: state}); err != nil {
			return fmt.Errorf("record power state: %w", err)
		}
	}
	if status := serviceStatusAfter(job.Args.Action, job.Service.Status); status != job.Service.Status {
		if err := q.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: job.Service.ID, Status: status}); err != nil {
			return fmt.Errorf("record service status: %w", err)
		}
	}
	job.SetResult(PowerResult{Action: job.Args.Action, PowerState: state})
	return nil
}

// cancellationStands reports whether a cancellation's suspend (or resume)
// still matches the service: a suspend while it is cancelled and not
// terminated, a resume while it is not cancelled.
func cancellationStands(svc *queries.Service, action string) bool {
	cancelled := svc.TerminationJobID.Valid && svc.Status != "terminated"
	return cancelled == (action == "suspend")
}

// serviceStatusAfter returns the service status a successful action leaves.
func serviceStatusAfter(action, status string) string {
	switch {
	case action == "suspend" && status == "active":
		return "suspended"
	case action == "resume" && status == "suspended":
		return "active"
	}
	return status
}

func permanent(op, msg string) error {
	return &failure.Error{Class: failure.Permanent, Provider: "provisiond", Op: op, Message: msg}
}
