// Package service is the fleet's service domain: the use cases that change
// what a service is — its creation with its provisioning job, its
// cancellation and the termination it schedules, the withdrawal of a
// cancellation, a renewal, the release of an additional IP, the reasons it
// is suspended for, and its verification against its provider.
//
// Rows that belong together are written in one transaction (a service and
// its provisioning job, a cancellation and its termination and suspension
// jobs), and the jobs' tasks are enqueued once it has committed. The API
// decodes, authorises, calls a use case and encodes the answer; providers
// are reached only through the jobs.Registry.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// Services carries out the service use cases. Its fields are its
// dependencies.
type Services struct {
	// DB begins the transactions (a *pgxpool.Pool).
	DB interface {
		Begin(ctx context.Context) (pgx.Tx, error)
	}
	Queries *queries.Queries
	Jobs    *jobs.Client
	// Tasks deletes the queued task of a job that was cancelled or moved
	// (an asynq.Inspector).
	Tasks interface {
		DeleteTask(queue, id string) error
	}
	Providers *jobs.Registry
	// Verifier compares a service with its provider (a jobs.Reconciler).
	Verifier interface {
		Verify(ctx context.Context, svc *queries.Service) ([]jobs.Drift, error)
	}
	// CancelGrace is how long a service cancelled "immediately" stays
	// suspended before it is terminated.
	CancelGrace time.Duration
	// Now, when set, is the clock cancellations and renewals are timed by.
	Now func() time.Time
	Log *slog.Logger
}

// Actor is who asks: the job rows record it.
type Actor struct {
	APIKeyID uuid.UUID
	// PersonID is the person behind the key, GrantID the grant they act
	// through on another team's service (uuid.Nil for none).
	PersonID, GrantID uuid.UUID
	// By is shown to users ("api key pk_1a2b").
	By string
}

// request is a job request of the actor's on the service.
func (a Actor) request(svc queries.Service) jobs.Request {
	return jobs.Request{TeamID: svc.TeamID, ServiceID: svc.ID, APIKeyID: a.APIKeyID, PersonID: a.PersonID, GrantID: a.GrantID, RequestedBy: a.By}
}

// Code classifies a refusal, for the API to answer it.
type Code int

// Refusals.
const (
	// Invalid: the request is wrong (400).
	Invalid Code = iota
	// NotFound: what it names does not exist (404).
	NotFound
	// Conflict: the service's state does not allow it now (409).
	Conflict
	// Unavailable: this process cannot do it (503).
	Unavailable
)

// Error is a use case's refusal, with a stable Key for clients.
type Error struct {
	Code    Code
	Key     string
	Message string
	// Details lists what is invalid, one line each.
	Details []string
}

func (e *Error) Error() string { return e.Message }

func invalid(details ...string) *Error {
	return &Error{Code: Invalid, Message: "Validation failed", Details: details}
}

func (s *Services) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// inTx runs fn in a transaction and commits it; the jobs fn recorded are
// enqueued once the transaction has committed.
func (s *Services) inTx(ctx context.Context, fn func(tx pgx.Tx, q *queries.Queries, record func(queries.Job)) error) error {
	var recorded []queries.Job
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		recorded = recorded[:0]
		return fn(tx, s.Queries.WithTx(tx), func(j queries.Job) { recorded = append(recorded, j) })
	})
	if err != nil {
		return err
	}
	for _, j := range recorded {
		s.Jobs.EnqueueRecorded(ctx, j)
	}
	return nil
}

// deleteTask removes the task of a job that no longer runs at its time; a
// task left behind finds its job cancelled or moved and does nothing.
func (s *Services) deleteTask(job queries.Job, why string) {
	if err := s.Tasks.DeleteTask(job.Queue, job.ID.String()); err != nil {
		s.Log.Info(why+": task not deleted; its job will not run it", "job_id", job.ID, "service_id", job.ServiceID.UUID, "err", err)
	}
}

// NewService is a service to create with the job that provisions it.
type NewService struct {
	Params queries.CreateServiceParams
	// Job returns the provisioning job's arguments for the new service.
	Job func(service uuid.UUID) jobs.Args
	// Request is the job's request (who, idempotency key, secrets); its
	// ServiceID is set to the new service's.
	Request jobs.Request
}

// Create records a pending service and its provisioning job in one
// transaction. For an idempotency key used before it records nothing and
// returns the first service and job with replayed true.
func (s *Services) Create(ctx context.Context, n NewService) (svc queries.Service, job queries.Job, replayed bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx, q *queries.Queries, record func(queries.Job)) error {
		if svc, err = q.CreateService(ctx, n.Params); err != nil {
			return err
		}
		req := n.Request
		req.ServiceID = svc.ID
		if job, replayed, err = s.Jobs.InsertTx(ctx, tx, n.Job(svc.ID), req); err != nil {
			return err
		}
		if replayed {
			return errReplayed
		}
		record(job)
		return nil
	})
	if errors.Is(err, errReplayed) {
		// The transaction is rolled back: the first request's service is
		// the answer.
		svc, err = s.Queries.GetService(ctx, job.ServiceID.UUID)
		return svc, job, true, err
	}
	if err == nil {
		s.Log.Info("service provisioning", "service_id", svc.ID, "provider", svc.Provider, "job_id", job.ID)
	}
	return svc, job, false, err
}

// errReplayed rolls back a creation whose idempotency key was used before.
var errReplayed = errors.New("idempotent replay")

// Verify compares the service with its provider now and returns what
// differs and the service as it stands afterwards.
func (s *Services) Verify(ctx context.Context, svc queries.Service) (queries.Service, []jobs.Drift, error) {
	if s.Verifier == nil {
		return svc, nil, unavailable(svc.Provider)
	}
	drift, err := s.Verifier.Verify(ctx, &svc)
	if errors.Is(err, jobs.ErrNoProvider) {
		return svc, nil, unavailable(svc.Provider)
	}
	if err != nil {
		return svc, nil, err
	}
	if svc, err = s.Queries.GetService(ctx, svc.ID); err != nil {
		return svc, nil, fmt.Errorf("load service %s: %w", svc.ID, err)
	}
	if drift == nil {
		drift = []jobs.Drift{}
	}
	return svc, drift, nil
}

// unavailable refuses what needs a provider this process does not run.
func unavailable(provider string) *Error {
	return &Error{Code: Unavailable, Key: "provider_unavailable", Message: provider + " is not configured on this server"}
}

// Register records a service for an existing resource of its provider (a
// VM; params.ProviderRef names it): the service is pending until the
// provider has found the resource free and marked it the service's (see
// jobs.Registrar), then active. A resource that does not exist or that
// another service holds is refused (the provider's error), and the same
// resource cannot be registered twice. The registration's pending row goes
// when the registration fails: a provider call sits between the two writes,
// so they cannot be one transaction; a row an API stopped with is taken
// over by the team's next registration of the same resource.
func (s *Services) Register(ctx context.Context, params queries.CreateServiceParams) (queries.Service, error) {
	p, ok := jobs.Capability[jobs.Registrar](s.Providers, params.Provider)
	if !ok {
		return queries.Service{}, unavailable(params.Provider)
	}
	params.Status = "pending"
	svc, err := s.Queries.CreateService(ctx, params)
	if err != nil {
		return svc, err
	}
	err = p.Register(ctx, svc)
	if err == nil {
		err = s.Queries.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: svc.ID, Status: "active"})
		svc.Status = "active"
	}
	if err != nil {
		if derr := s.Queries.DeletePendingService(context.WithoutCancel(ctx), svc.ID); derr != nil {
			s.Log.Error("could not remove a service whose registration failed", "service_id", svc.ID, "provider", svc.Provider, "err", derr)
		}
		return queries.Service{}, err
	}
	s.Log.Info("service registered", "service_id", svc.ID, "provider", svc.Provider)
	return svc, nil
}
