package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/queries"
)

// TaskReconcile is the asynq task type of a reconciliation round.
const TaskReconcile = "reconcile.round"

// Drift kinds: what a verification can find differing between the database
// and the provider.
const (
	// DriftMissing: the service's VM does not exist (needs repair).
	DriftMissing = "missing"
	// DriftForeign: the VM at the service's reference is not its own
	// (needs repair).
	DriftForeign = "foreign"
	// DriftPower: the recorded power state was not the VM's (fixed: the
	// record follows the VM).
	DriftPower = "power"
	// DriftPlan: the VM's cores, memory or disk differ from the plan (an
	// upgrade or plan change brings them back).
	DriftPlan = "plan"
	// DriftRescue: the VM boots the rescue system (rescue off ends it).
	DriftRescue = "rescue"
	// DriftLocked: the VM is locked with no task to release it (an
	// operator must unlock it).
	DriftLocked = "locked"
	// DriftOrphan: a VM or game server of ours that no live service owns
	// (deleted after the grace period when it is a leftover of a service
	// we know).
	DriftOrphan = "orphan"
	// DriftSuspension: the provider's suspension differs from the
	// service's (the power action suspend or resume puts it right).
	DriftSuspension = "suspension"
	// DriftInstall: the game server's install failed (a reinstall repairs
	// it).
	DriftInstall = "install"
)

// DriftKinds lists every drift kind, for metrics.
var DriftKinds = []string{DriftMissing, DriftForeign, DriftPower, DriftPlan, DriftRescue, DriftLocked, DriftOrphan,
	DriftSuspension, DriftInstall}

// Drift is one difference a verification found.
type Drift struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// Fixed says the reconciler put it right on its own.
	Fixed bool `json:"fixed,omitempty"`
}

// ReconcileResult is what one round found.
type ReconcileResult struct {
	// Services counts the services verified; Busy those left for the next
	// round because a job is changing them; Failed those whose provider
	// could not be read.
	Services, Busy, Failed int
	// Drifted counts services by drift kind (orphans by resource).
	Drifted map[string]int
	// Destroyed names the orphan resources deleted ("proxmox VM 104 on
	// pve1", "pterodactyl server 12").
	Destroyed []string
}

// ErrNoProvider is returned by Verify for a service of a provider the
// reconciler has no client for.
var ErrNoProvider = errors.New("the service's provider is not configured")

// Reconciler compares live services with their provider ("verify and
// repair"): it records per service what differs, fixes what is safe on its
// own (the recorded power state; a leftover resource of ours after a grace
// period), and marks services whose resource is missing or not theirs
// needs_repair, where the repair job takes over. It asks every registered
// Verifier.
type Reconciler struct {
	Queries   *queries.Queries
	Providers *Registry
	Log       *slog.Logger
	// OrphanGrace is how long a leftover VM or game server of ours is left
	// before it is deleted; default a day.
	OrphanGrace time.Duration
	// Observer, when set, is told what each round found.
	Observer interface {
		ObserveDrift(counts map[string]int)
	}
}

// HandleRound is the asynq handler of TaskReconcile.
func (r *Reconciler) HandleRound(ctx context.Context, _ *asynq.Task) error {
	res, err := r.Round(ctx)
	if err != nil {
		r.Log.Error("reconciliation round failed", "err", err)
		return err
	}
	r.Log.Info("reconciliation round", "services", res.Services, "busy", res.Busy, "drift", res.Drifted, "destroyed", len(res.Destroyed))
	return nil
}

// Round verifies every live service of the registered providers and looks
// for their resources of ours that no live service owns.
func (r *Reconciler) Round(ctx context.Context) (ReconcileResult, error) {
	res := ReconcileResult{Drifted: map[string]int{}}
	for _, p := range Capable[Verifier](r.Providers) {
		owned := map[string]uuid.UUID{} // resource → the live service pointing at it
		err := r.verifyAll(ctx, p, &res, func(svc *queries.Service) {
			if id, ok := p.Resource(svc); ok {
				owned[id] = svc.ID
			}
		})
		if err == nil {
			var found []Marked
			if found, err = p.Marked(ctx, r.Log); err == nil {
				found = slices.DeleteFunc(found, func(m Marked) bool { return owned[m.Resource] == m.Service })
				err = r.orphans(ctx, p, found, &res)
			}
		}
		if err != nil {
			return res, err
		}
	}
	if r.Observer != nil {
		counts := map[string]int{}
		for _, k := range DriftKinds {
			counts[k] = res.Drifted[k] // a kind not found now is zero, not its last count
		}
		r.Observer.ObserveDrift(counts)
	}
	return res, nil
}

// verifyAll verifies every live service of the provider that no job is
// changing, telling own about each one (busy or not) first.
func (r *Reconciler) verifyAll(ctx context.Context, p Verifier, res *ReconcileResult, own func(*queries.Service)) error {
	rows, err := r.Queries.ListVerifiableServices(ctx, p.Name())
	if err != nil {
		return fmt.Errorf("list %s services: %w", p.Name(), err)
	}
	for _, row := range rows {
		svc := row.Service
		own(&svc)
		if row.Busy {
			res.Busy++
			continue
		}
		drift, err := r.Verify(ctx, &svc)
		if err != nil {
			// One service that cannot be read (its node is down) does not
			// hold up the others; the next round looks again.
			r.Log.Warn("service not verified", "service_id", svc.ID, "provider", svc.Provider, "err", err)
			res.Failed++
			continue
		}
		res.Services++
		for _, d := range drift {
			res.Drifted[d.Kind]++
		}
	}
	return nil
}

// Verify compares one service with its provider's resource (a VM, a game
// server), records what differs on the service and returns it.
func (r *Reconciler) Verify(ctx context.Context, svc *queries.Service) ([]Drift, error) {
	log := r.Log.With("service_id", svc.ID, "provider", svc.Provider)
	p, ok := Capability[Verifier](r.Providers, svc.Provider)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoProvider, svc.Provider)
	}
	drift, err := p.Verify(ctx, svc, log)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(drift)
	if err := r.Queries.SetServiceDrift(ctx, queries.SetServiceDriftParams{ID: svc.ID, Drift: b}); err != nil {
		return nil, fmt.Errorf("record drift: %w", err)
	}
	if len(drift) > 0 {
		log.Warn("service drifted from its provider", "drift", drift)
	}
	return drift, nil
}

// orphans judges a provider's resources that carry a service's mark while
// no live service points at them. One left over by a service we know
// (terminated, or moved to another resource by a repair) is deleted once
// it has been seen so for the grace period; one of a service we do not
// know (another installation's) is only reported.
func (r *Reconciler) orphans(ctx context.Context, p Verifier, found []Marked, res *ReconcileResult) error {
	grace := r.OrphanGrace
	if grace <= 0 {
		grace = 24 * time.Hour
	}
	seen := []string{}
	for _, o := range found {
		svc, err := r.Queries.GetService(ctx, o.Service)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			res.Drifted[DriftOrphan]++
			o.Log.Warn("a resource carries the mark of a service this fleet does not know; left alone", "resource", o.Name)
			continue
		case err != nil:
			return fmt.Errorf("load service %s: %w", o.Service, err)
		}
		if mine, err := r.leftover(ctx, p, svc, o); err != nil || !mine {
			if err != nil {
				return err
			}
			continue
		}
		seen = append(seen, o.Resource)
		res.Drifted[DriftOrphan]++
		first, err := r.Queries.SeeOrphan(ctx, queries.SeeOrphanParams{Provider: p.Name(), Resource: o.Resource, ServiceID: o.Service})
		if err != nil {
			return fmt.Errorf("record orphan %s: %w", o.Name, err)
		}
		if time.Since(first) < grace {
			o.Log.Warn("a resource of ours belongs to no live service; deleted once the grace period ends",
				"resource", o.Name, "service_status", svc.Status, "first_seen", first)
			continue
		}
		if err := o.Delete(ctx); err != nil {
			o.Log.Error("could not delete an orphan resource", "resource", o.Name, "err", err)
			continue
		}
		o.Log.Warn("deleted a resource of ours that no live service owned", "resource", o.Name, "service_status", svc.Status, "first_seen", first)
		res.Destroyed = append(res.Destroyed, o.Name)
	}
	return r.Queries.ForgetOrphans(ctx, queries.ForgetOrphansParams{Provider: p.Name(), Seen: seen})
}

// leftover reports whether a resource marked for svc is a leftover of it:
// the service (read afresh) no longer points at it, no job is making or
// changing it, and the provider's own proof holds.
func (r *Reconciler) leftover(ctx context.Context, p Verifier, svc queries.Service, o Marked) (bool, error) {
	id, points := p.Resource(&svc)
	points = points && id == o.Resource
	// A terminated service owns nothing, whatever its last reference says.
	if (points && svc.Status != "terminated") || svc.Provider != p.Name() {
		return false, nil
	}
	if _, err := r.Queries.GetActiveServiceJob(ctx, nullUUID(svc.ID)); err == nil {
		return false, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	if o.Ours == nil {
		return true, nil
	}
	return o.Ours(ctx, svc)
}
