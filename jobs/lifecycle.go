package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/queries"
)

// TerminationArgs ask for a cancelled service to be terminated at the time
// its cancellation set.
type TerminationArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Generation is the cancellation's number on the service: a withdrawn
	// cancellation followed by a new one makes a new termination job.
	Generation int32 `json:"generation"`
}

// Kind implements Args.
func (TerminationArgs) Kind() string { return "service.terminate" }

// InsertOpts: a scheduled termination does not hold its service, so that
// the customer can still use it until then.
func (TerminationArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 50, Timeout: time.Hour, Mutating: false}
}

// terminationNamespace derives termination job ids.
var terminationNamespace = uuid.MustParse("5b7c0c2e-6f3f-4d8e-9f0e-1c2d3e4f5a6b")

// TerminationJobID is the id of the termination job (and its asynq task) of
// a service's cancellation number generation: cancelling twice cannot
// schedule two terminations.
func TerminationJobID(service uuid.UUID, generation int32) uuid.UUID {
	return uuid.NewSHA1(terminationNamespace, fmt.Appendf(nil, "%s/%d", service, generation))
}

// CancellationPowerJobID is the id of the job that suspends a service for
// its cancellation number generation (action "suspend"), or resumes it when
// that cancellation is withdrawn ("resume"): derived, so that the API and
// the sweeper record each once between them.
func CancellationPowerJobID(service uuid.UUID, generation int32, action string) uuid.UUID {
	return uuid.NewSHA1(terminationNamespace, fmt.Appendf(nil, "%s/%d/%s", service, generation, action))
}

// CancellationPower returns the job that suspends (or resumes) the service
// for its cancellation of generation: it waits, without spending attempts,
// for a job the service has running (a 4-hour backup) and runs as soon as
// the service is free.
func CancellationPower(svc queries.Service, generation int32, action string) (PowerArgs, uuid.UUID) {
	return PowerArgs{ServiceID: svc.ID, Action: action, Reason: SuspendedForCancellation, WaitForService: true},
		CancellationPowerJobID(svc.ID, generation, action)
}

// TerminationWorker carries out scheduled terminations through the
// service's provider (a Terminator).
type TerminationWorker struct {
	Queries   *queries.Queries
	Providers *Registry
}

// Work implements Worker. It acts only on what the database says now: a
// service whose cancellation was withdrawn, whose termination moved later
// (a renewal), or that is terminated already, is left alone.
func (w *TerminationWorker) Work(ctx context.Context, job *Job[TerminationArgs]) error {
	svc := job.Service
	switch {
	case svc == nil:
		return permanent(job.Args.Kind(), "the service is gone")
	case svc.Status == "terminated":
		job.Log.Info("service terminated already")
		return nil
	case !svc.TerminationJobID.Valid || svc.TerminationJobID.UUID != job.Row.ID:
		return &StoppedError{Err: ErrCancelled, Condition: "the cancellation was withdrawn"}
	case svc.TerminateAt != nil && time.Until(*svc.TerminateAt) > time.Minute:
		// Renewed meanwhile; the renewal rescheduled the task, this is a
		// stale delivery. Come back at the new time.
		return &SnoozeError{After: time.Until(*svc.TerminateAt),
			Reason: "the termination was moved to " + svc.TerminateAt.UTC().Format(time.RFC3339)}
	}
	t, ok := Capability[Terminator](w.Providers, svc.Provider)
	if !ok {
		return permanent(job.Args.Kind(), "no termination is known for "+svc.Provider+" services")
	}
	// A termination does not hold its service (the customer uses it until
	// then), so it waits for a job still changing it (a backup) to end.
	if other, err := w.Queries.GetActiveServiceJob(ctx, nullUUID(svc.ID)); err == nil {
		return &SnoozeError{After: 15 * time.Second,
			Reason: fmt.Sprintf("waiting for job %s (%s) on the service to end", other.ID, other.Kind)}
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look for the service's running job: %w", err)
	}
	return t.Terminate(ctx, job)
}

// Suspension reasons, kept apart so that resuming for one does not undo
// the other.
const (
	SuspendedForPayment      = "payment"
	SuspendedForCancellation = "cancellation"
)

// decideSuspension records the job's reason as added (suspend) or removed
// (resume) and reports whether the provider must act: a suspend acts while
// any reason is recorded, a resume only once none is left (or when none was
// recorded at all). Both halves are idempotent, so a retry after a failure
// anywhere decides the same: the reasons form a set, and the provider's
// operations leave a server that is where they would take it alone.
// The reasons are changed in one statement on what the database holds now,
// so that a reason another job recorded meanwhile is never lost.
func (w *PowerWorker) decideSuspension(ctx context.Context, job *Job[PowerArgs]) (bool, error) {
	reason := cmp.Or(job.Args.Reason, SuspendedForPayment)
	if job.Args.Action == "suspend" {
		if _, err := w.Queries.AddSuspension(ctx, queries.AddSuspensionParams{ID: job.Service.ID, Reason: reason}); err != nil {
			return false, fmt.Errorf("record suspensions: %w", err)
		}
		return true, nil
	}
	left, err := w.Queries.RemoveSuspension(ctx, queries.RemoveSuspensionParams{ID: job.Service.ID, Reason: reason})
	if err != nil {
		return false, fmt.Errorf("record suspensions: %w", err)
	}
	return len(left) == 0, nil
}
