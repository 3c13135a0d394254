package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
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
// own (the recorded power state; a leftover VM of ours after a grace
// period), and marks services whose VM is missing or not theirs
// needs_repair, where the repair job takes over.
type Reconciler struct {
	Queries *queries.Queries
	// Proxmox and Pterodactyl are the providers whose services are
	// verified; a nil one is left out.
	Proxmox     *proxmox.Client
	Pterodactyl *pterodactyl.Client
	Log         *slog.Logger
	// RescueISO is the rescue system's ISO volume (see VPSWorkers).
	RescueISO string
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

// Round verifies every live service of the configured providers and looks
// for their resources of ours that no live service owns.
func (r *Reconciler) Round(ctx context.Context) (ReconcileResult, error) {
	res := ReconcileResult{Drifted: map[string]int{}}
	if r.Proxmox != nil {
		owned := map[string]uuid.UUID{} // VMID → the live service pointing at it
		err := r.verifyAll(ctx, proxmox.Provider, &res, func(svc *queries.Service) {
			if ref, err := ProxmoxRef(svc); err == nil {
				owned[strconv.Itoa(ref.VMID)] = svc.ID
			}
		})
		if err == nil {
			err = r.vmOrphans(ctx, owned, &res)
		}
		if err != nil {
			return res, err
		}
	}
	if r.Pterodactyl != nil {
		owned := map[string]uuid.UUID{} // server id → the live service pointing at it
		err := r.verifyAll(ctx, pterodactyl.Provider, &res, func(svc *queries.Service) {
			if ref, err := PterodactylRef(svc); err == nil {
				owned[strconv.Itoa(ref.ServerID)] = svc.ID
			}
		})
		if err == nil {
			err = r.gameOrphans(ctx, owned, &res)
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
func (r *Reconciler) verifyAll(ctx context.Context, provider string, res *ReconcileResult, own func(*queries.Service)) error {
	rows, err := r.Queries.ListVerifiableServices(ctx, provider)
	if err != nil {
		return fmt.Errorf("list %s services: %w", provider, err)
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
	var drift []Drift
	var err error
	switch {
	case svc.Provider == proxmox.Provider && r.Proxmox != nil:
		drift, err = r.verifyVM(ctx, svc, log)
	case svc.Provider == pterodactyl.Provider && r.Pterodactyl != nil:
		drift, err = r.verifyGame(ctx, svc)
	default:
		return nil, fmt.Errorf("%w: %s", ErrNoProvider, svc.Provider)
	}
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

func (r *Reconciler) verifyVM(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]Drift, error) {
	if _, err := ProxmoxRef(svc); err != nil {
		return nil, nil // never provisioned: nothing to compare
	}
	ref, err := ServiceVM(ctx, r.Proxmox, r.Queries, svc, log)
	switch {
	case errors.Is(err, ErrServiceBusy):
		return nil, nil // a job is changing it: the next round looks
	case errors.Is(err, errVMGone):
		return []Drift{{Kind: DriftMissing, Detail: failure.UserMessage(err)}}, nil
	case errors.Is(err, ErrNeedsRepair):
		return []Drift{{Kind: DriftForeign, Detail: failure.UserMessage(err)}}, nil
	case err != nil:
		return nil, err
	}
	cfg, err := r.Proxmox.Config(ctx, ref)
	if err != nil {
		return nil, err
	}
	st, err := r.Proxmox.State(ctx, ref)
	if err != nil {
		return nil, err
	}
	var drift []Drift
	switch got := st.PowerState(); {
	case svc.Status == "suspended" && got == "running":
		// Not the record's to follow: the VM of a suspended service runs.
		drift = append(drift, Drift{Kind: DriftPower,
			Detail: "the service is suspended but its VM runs; suspend it again (POST /action suspend)"})
	case got != svc.PowerState:
		if err := r.Queries.FollowPowerState(ctx, queries.FollowPowerStateParams{ID: svc.ID, PowerState: got, Was: svc.PowerState}); err != nil {
			return nil, fmt.Errorf("record power state: %w", err)
		}
		drift = append(drift, Drift{Kind: DriftPower, Fixed: true,
			Detail: fmt.Sprintf("recorded %s, the VM is %s; the record now follows the VM", svc.PowerState, got)})
	}
	if plan, err := ServicePlan(svc); err == nil {
		var diffs []string
		if cfg.Cores != plan.Cores {
			diffs = append(diffs, fmt.Sprintf("cores %d (plan %d)", cfg.Cores, plan.Cores))
		}
		if cfg.MemoryMB != plan.MemoryMB {
			diffs = append(diffs, fmt.Sprintf("memory %d MB (plan %d MB)", cfg.MemoryMB, plan.MemoryMB))
		}
		if disk := cfg.Disks[bootDisk(cfg)]; disk < plan.DiskGB {
			diffs = append(diffs, fmt.Sprintf("disk %d GB (plan %d GB)", disk, plan.DiskGB))
		}
		if len(diffs) > 0 {
			drift = append(drift, Drift{Kind: DriftPlan, Detail: "the VM has " + strings.Join(diffs, ", ") + "; an upgrade or plan change applies the plan"})
		}
	}
	if strings.HasPrefix(cfg.Boot, "order=ide2") && strings.HasPrefix(cfg.IDE2, r.rescueISO()) {
		drift = append(drift, Drift{Kind: DriftRescue, Detail: "the VM boots the rescue system; DELETE /rescue ends it"})
	}
	if cfg.Lock != "" {
		busy, err := r.Proxmox.Busy(ctx, ref)
		if err != nil {
			return nil, err
		}
		if !busy {
			drift = append(drift, Drift{Kind: DriftLocked, Detail: fmt.Sprintf("the VM is locked (%s) with no task running; an operator must check it and unlock it (qm unlock %d)", cfg.Lock, ref.VMID)})
		}
	}
	return drift, nil
}

// gameStatesRecorded maps the panel's settled power states to the
// service's; starting and stopping are left for the next round.
var gameStatesRecorded = map[string]string{"running": "running", "offline": "stopped"}

func (r *Reconciler) verifyGame(ctx context.Context, svc *queries.Service) ([]Drift, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return nil, nil // never provisioned: nothing to compare
	}
	srv, err := r.Pterodactyl.Server(ctx, ref.ServerID)
	switch {
	case errors.Is(err, pterodactyl.ErrNotFound):
		return []Drift{{Kind: DriftMissing, Detail: fmt.Sprintf("game server %d no longer exists on the panel; terminate the service or order it again", ref.ServerID)}}, nil
	case err != nil:
		return nil, err
	case srv.ExternalID != svc.ID.String():
		return []Drift{{Kind: DriftForeign, Detail: fmt.Sprintf("game server %d is not this service's (its external id is %q); nothing was changed", ref.ServerID, srv.ExternalID)}}, nil
	}
	var drift []Drift
	switch {
	case svc.Status == "suspended" && !srv.Suspended:
		drift = append(drift, Drift{Kind: DriftSuspension, Detail: "the service is suspended but its game server is not; suspend it again (POST /action suspend)"})
	case svc.Status != "suspended" && srv.Suspended:
		drift = append(drift, Drift{Kind: DriftSuspension, Detail: "the game server is suspended on the panel but the service is not; resume it (POST /action resume)"})
	}
	switch srv.Status {
	case pterodactyl.StatusInstallFailed, pterodactyl.StatusReinstallFailed:
		drift = append(drift, Drift{Kind: DriftInstall, Detail: "the game server's install failed (" + srv.Status + "); a reinstall repairs it"})
	case "", pterodactyl.StatusSuspended:
		if res, err := r.Pterodactyl.Resources(ctx, ref.Identifier); err != nil {
			return nil, err
		} else if got := gameStatesRecorded[res.State]; got != "" && got != svc.PowerState {
			if err := r.Queries.FollowPowerState(ctx, queries.FollowPowerStateParams{ID: svc.ID, PowerState: got, Was: svc.PowerState}); err != nil {
				return nil, fmt.Errorf("record power state: %w", err)
			}
			drift = append(drift, Drift{Kind: DriftPower, Fixed: true,
				Detail: fmt.Sprintf("recorded %s, the game server is %s; the record now follows the server", svc.PowerState, got)})
		}
	}
	if plan, err := GameServicePlan(svc); err == nil {
		want, _ := plan.limits()
		var diffs []string
		for _, l := range []struct {
			name      string
			got, want int
		}{{"memory", srv.Limits.Memory, want.Memory}, {"disk", srv.Limits.Disk, want.Disk}, {"cpu", srv.Limits.CPU, want.CPU}} {
			if l.got != l.want {
				diffs = append(diffs, fmt.Sprintf("%s %d (plan %d)", l.name, l.got, l.want))
			}
		}
		if len(diffs) > 0 {
			drift = append(drift, Drift{Kind: DriftPlan, Detail: "the game server has " + strings.Join(diffs, ", ") + "; a plan change applies the plan"})
		}
	}
	return drift, nil
}

func (r *Reconciler) rescueISO() string {
	if r.RescueISO == "" {
		return "local:iso/rescue.iso"
	}
	return r.RescueISO
}

// orphan is a provider resource that carries a service's mark while no
// live service points at it.
type orphan struct {
	provider string
	// resource is the provider's id of it (a VMID, a panel server id);
	// name says what it is in logs and results.
	resource, name string
	service        uuid.UUID
	log            *slog.Logger
	// ours adds to the mark a proof that the fleet made it for the
	// service; nil when the mark is proof enough.
	ours func(context.Context, queries.Service) (bool, error)
	// delete deletes it after checking its mark once more.
	delete func(context.Context) error
}

// vmOrphans finds the VMs that carry a service's tag while no live service
// points at them. A VM's tag is not proof enough that the fleet made it:
// its VMID must have been reserved for the service too (an operator's
// clone of the VM, at a VMID of their own, is not ours to destroy).
func (r *Reconciler) vmOrphans(ctx context.Context, owned map[string]uuid.UUID, res *ReconcileResult) error {
	inv, err := r.Proxmox.Inventory(ctx)
	if err != nil {
		return err
	}
	var found []orphan
	for _, vm := range inv.Tagged("svc-") {
		id, err := uuid.Parse(strings.TrimPrefix(vm.Tag, "svc-"))
		if err != nil || owned[strconv.Itoa(vm.VMID)] == id {
			continue
		}
		found = append(found, orphan{provider: proxmox.Provider, resource: strconv.Itoa(vm.VMID),
			name: fmt.Sprintf("proxmox VM %d on %s", vm.VMID, vm.Node), service: id,
			log: r.Log.With("service_id", id, "provider", proxmox.Provider, "node", vm.Node, "vmid", vm.VMID),
			ours: func(ctx context.Context, svc queries.Service) (bool, error) {
				ids, err := r.Queries.ServiceVMIDs(ctx, svc.ID)
				return slices.Contains(ids, int32(vm.VMID)), err
			},
			delete: func(ctx context.Context) error { return r.destroyVM(ctx, vm.VMRef, id) },
		})
	}
	return r.orphans(ctx, proxmox.Provider, found, res)
}

// gameOrphans finds the game servers whose external id is a service's
// while no live service points at them. The panel keeps external ids
// unique, and only the fleet sets them to a service's id: the mark is
// proof enough.
func (r *Reconciler) gameOrphans(ctx context.Context, owned map[string]uuid.UUID, res *ReconcileResult) error {
	servers, err := r.Pterodactyl.Servers(ctx)
	if err != nil {
		return err
	}
	var found []orphan
	for _, srv := range servers {
		id, err := uuid.Parse(srv.ExternalID)
		if err != nil || owned[strconv.Itoa(srv.ID)] == id {
			continue
		}
		found = append(found, orphan{provider: pterodactyl.Provider, resource: strconv.Itoa(srv.ID),
			name: fmt.Sprintf("pterodactyl server %d", srv.ID), service: id,
			log:    r.Log.With("service_id", id, "provider", pterodactyl.Provider, "server", srv.ID),
			delete: func(ctx context.Context) error { return r.deleteGameServer(ctx, srv.ID, id) },
		})
	}
	return r.orphans(ctx, pterodactyl.Provider, found, res)
}

// orphans judges a provider's resources that carry a service's mark while
// no live service points at them. One left over by a service we know
// (terminated, or moved to another resource by a repair) is deleted once
// it has been seen so for the grace period; one of a service we do not
// know (another installation's) is only reported.
func (r *Reconciler) orphans(ctx context.Context, provider string, found []orphan, res *ReconcileResult) error {
	grace := r.OrphanGrace
	if grace <= 0 {
		grace = 24 * time.Hour
	}
	seen := []string{}
	for _, o := range found {
		svc, err := r.Queries.GetService(ctx, o.service)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			res.Drifted[DriftOrphan]++
			o.log.Warn("a resource carries the mark of a service this fleet does not know; left alone", "resource", o.name)
			continue
		case err != nil:
			return fmt.Errorf("load service %s: %w", o.service, err)
		}
		if mine, err := r.leftover(ctx, svc, o); err != nil || !mine {
			if err != nil {
				return err
			}
			continue
		}
		seen = append(seen, o.resource)
		res.Drifted[DriftOrphan]++
		first, err := r.Queries.SeeOrphan(ctx, queries.SeeOrphanParams{Provider: provider, Resource: o.resource, ServiceID: o.service})
		if err != nil {
			return fmt.Errorf("record orphan %s: %w", o.name, err)
		}
		if time.Since(first) < grace {
			o.log.Warn("a resource of ours belongs to no live service; deleted once the grace period ends",
				"resource", o.name, "service_status", svc.Status, "first_seen", first)
			continue
		}
		if err := o.delete(ctx); err != nil {
			o.log.Error("could not delete an orphan resource", "resource", o.name, "err", err)
			continue
		}
		o.log.Warn("deleted a resource of ours that no live service owned", "resource", o.name, "service_status", svc.Status, "first_seen", first)
		res.Destroyed = append(res.Destroyed, o.name)
	}
	return r.Queries.ForgetOrphans(ctx, queries.ForgetOrphansParams{Provider: provider, Seen: seen})
}

// leftover reports whether a resource marked for svc is a leftover of it:
// the service (read afresh) no longer points at it, no job is making or
// changing it, and the provider's own proof holds.
func (r *Reconciler) leftover(ctx context.Context, svc queries.Service, o orphan) (bool, error) {
	var points bool
	switch svc.Provider {
	case proxmox.Provider:
		ref, err := ProxmoxRef(&svc)
		points = err == nil && strconv.Itoa(ref.VMID) == o.resource
	case pterodactyl.Provider:
		ref, err := PterodactylRef(&svc)
		points = err == nil && strconv.Itoa(ref.ServerID) == o.resource
	}
	// A terminated service owns nothing, whatever its last reference says.
	if (points && svc.Status != "terminated") || svc.Provider != o.provider {
		return false, nil
	}
	if _, err := r.Queries.GetActiveServiceJob(ctx, nullUUID(svc.ID)); err == nil {
		return false, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	if o.ours == nil {
		return true, nil
	}
	return o.ours(ctx, svc)
}

// destroyVM stops and destroys a VM after checking, once more, that it
// carries the service's tag.
func (r *Reconciler) destroyVM(ctx context.Context, ref proxmox.VMRef, service uuid.UUID) error {
	cfg, err := r.Proxmox.Config(ctx, ref)
	if err != nil {
		return err
	}
	if !slices.Contains(cfg.Tags, VMTag(service)) {
		return fmt.Errorf("VM %d no longer carries %s", ref.VMID, VMTag(service))
	}
	if st, err := r.Proxmox.State(ctx, ref); err != nil {
		return err
	} else if !st.Stopped() {
		upid, err := r.Proxmox.Power(ctx, ref, proxmox.OpStop, proxmox.PowerOptions{})
		if err != nil {
			return err
		}
		if _, err := r.Proxmox.WaitTask(ctx, upid); err != nil {
			return err
		}
	}
	upid, err := r.Proxmox.Destroy(ctx, ref)
	if err != nil {
		return err
	}
	_, err = r.Proxmox.WaitTask(ctx, upid)
	return err
}

// deleteGameServer deletes a game server after checking, once more, that
// its external id is the service's.
func (r *Reconciler) deleteGameServer(ctx context.Context, id int, service uuid.UUID) error {
	srv, err := r.Pterodactyl.Server(ctx, id)
	if err != nil {
		return err
	}
	if srv.ExternalID != service.String() {
		return fmt.Errorf("game server %d no longer carries the external id %s", id, service)
	}
	err = r.Pterodactyl.DeleteServer(ctx, id, false)
	if errors.Is(err, pterodactyl.ErrNotFound) {
		return nil
	}
	return err
}
