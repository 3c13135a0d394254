package jobs

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
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

// Terminator ends a service at one provider: the VM destroyed with its
// backups, the game server deleted. It marks the service terminated.
type Terminator func(ctx context.Context, job *Job[TerminationArgs]) error

// TerminationWorker carries out scheduled terminations. A new provider's
// termination plugs in as one more Terminator.
type TerminationWorker struct {
	Queries     *queries.Queries
	Terminators map[string]Terminator
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
		return &failure.Error{Class: failure.Transient, Provider: "provisiond", Op: "terminate",
			Message: "the termination was moved to " + svc.TerminateAt.UTC().Format(time.RFC3339), RetryAfter: time.Until(*svc.TerminateAt)}
	}
	t, ok := w.Terminators[svc.Provider]
	if !ok {
		return permanent(job.Args.Kind(), "no termination is known for "+svc.Provider+" services")
	}
	return t(ctx, job)
}

// Suspension reasons, kept apart so that resuming for one does not undo
// the other.
const (
	SuspendedForPayment      = "payment"
	SuspendedForCancellation = "cancellation"
)

// suspensionChange records reason being added (suspend) or removed and
// reports whether the provider must act: only the first reason suspends and
// only the last one's removal resumes (or a resume when no reason was
// recorded at all).
func (w *PowerWorker) suspensionChange(ctx context.Context, svc *queries.Service, reason string, suspend bool) (bool, error) {
	before := svc.Suspensions
	if !suspend && len(before) == 0 {
		return true, nil // suspended by nothing we recorded: resume as asked
	}
	after := slices.DeleteFunc(slices.Clone(before), func(r string) bool { return r == reason })
	if suspend {
		after = append(after, reason)
	}
	if slices.Equal(before, after) {
		return false, nil
	}
	if _, err := w.Queries.SetSuspensions(ctx, queries.SetSuspensionsParams{ID: svc.ID, Suspensions: after}); err != nil {
		return false, fmt.Errorf("record suspensions: %w", err)
	}
	return (len(before) == 0) != (len(after) == 0), nil
}

// decideSuspension records, once per job, whether a suspend or resume must
// reach the provider, and returns that decision.
func (w *PowerWorker) decideSuspension(ctx context.Context, job *Job[PowerArgs]) (bool, error) {
	var act bool
	if ok, err := job.Get("suspension", &act); err != nil || ok {
		return act, err
	}
	reason := job.Args.Reason
	if reason == "" {
		reason = SuspendedForPayment
	}
	act, err := w.suspensionChange(ctx, job.Service, reason, job.Args.Action == "suspend")
	if err != nil {
		return false, err
	}
	return act, job.Set(ctx, "suspension", act)
}
