package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
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
	// DriftOrphan: a VM of ours that no live service owns (destroyed after
	// the grace period when it is a leftover of a service we know).
	DriftOrphan = "orphan"
)

// DriftKinds lists every drift kind, for metrics.
var DriftKinds = []string{DriftMissing, DriftForeign, DriftPower, DriftPlan, DriftRescue, DriftLocked, DriftOrphan}

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
	// Drifted counts services by drift kind (orphans by VM).
	Drifted map[string]int
	// Destroyed lists the orphan VMs destroyed.
	Destroyed []proxmox.VMRef
}

// Reconciler compares live services with their provider ("verify and
// repair"): it records per service what differs, fixes what is safe on its
// own (the recorded power state; a leftover VM of ours after a grace
// period), and marks services whose VM is missing or not theirs
// needs_repair, where the repair job takes over.
type Reconciler struct {
	Queries *queries.Queries
	Proxmox *proxmox.Client
	Log     *slog.Logger
	// RescueISO is the rescue system's ISO volume (see VPSWorkers).
	RescueISO string
	// OrphanGrace is how long a leftover VM of ours is left before it is
	// destroyed; default a day.
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

// Round verifies every live Proxmox service and looks for VMs of ours that
// no live service owns.
func (r *Reconciler) Round(ctx context.Context) (ReconcileResult, error) {
	res := ReconcileResult{Drifted: map[string]int{}}
	if r.Proxmox == nil {
		return res, nil
	}
	rows, err := r.Queries.ListVerifiableServices(ctx, proxmox.Provider)
	if err != nil {
		return res, fmt.Errorf("list services: %w", err)
	}
	owned := map[int]uuid.UUID{} // VMID → the live service pointing at it
	for _, row := range rows {
		svc := row.Service
		if ref, err := ProxmoxRef(&svc); err == nil {
			owned[ref.VMID] = svc.ID
		}
		if row.Busy {
			res.Busy++
			continue
		}
		drift, err := r.Verify(ctx, &svc)
		if err != nil {
			// One VM that cannot be read (its node is down) does not hold
			// up the others; the next round looks again.
			r.Log.Warn("service not verified", "service_id", svc.ID, "provider", svc.Provider, "err", err)
			res.Failed++
			continue
		}
		res.Services++
		for _, d := range drift {
			res.Drifted[d.Kind]++
		}
	}
	if err := r.orphans(ctx, owned, &res); err != nil {
		return res, err
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

// Verify compares one Proxmox service with its VM, records what differs on
// the service and returns it.
func (r *Reconciler) Verify(ctx context.Context, svc *queries.Service) ([]Drift, error) {
	log := r.Log.With("service_id", svc.ID, "provider", svc.Provider)
	drift, err := r.verify(ctx, svc, log)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(drift)
	if err := r.Queries.SetServiceDrift(ctx, queries.SetServiceDriftParams{ID: svc.ID, Drift: b}); err != nil {
		return nil, fmt.Errorf("record drift: %w", err)
	}
	if len(drift) > 0 {
		log.Warn("service drifted from its VM", "drift", drift)
	}
	return drift, nil
}

func (r *Reconciler) verify(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]Drift, error) {
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

func (r *Reconciler) rescueISO() string {
	if r.RescueISO == "" {
		return "local:iso/rescue.iso"
	}
	return r.RescueISO
}

// orphans finds the VMs that carry a service's tag while no live service
// points at them. One left over by a service we know (terminated, or moved
// to another VM by a repair) is destroyed once it has been seen so for the
// grace period; one of a service we do not know (another installation's) is
// only reported.
func (r *Reconciler) orphans(ctx context.Context, owned map[int]uuid.UUID, res *ReconcileResult) error {
	inv, err := r.Proxmox.Inventory(ctx)
	if err != nil {
		return err
	}
	grace := r.OrphanGrace
	if grace <= 0 {
		grace = 24 * time.Hour
	}
	var seen []int32
	for _, vm := range inv.Tagged("svc-") {
		id, err := uuid.Parse(strings.TrimPrefix(vm.Tag, "svc-"))
		if err != nil || owned[vm.VMID] == id {
			continue
		}
		log := r.Log.With("service_id", id, "provider", proxmox.Provider, "node", vm.Node, "vmid", vm.VMID)
		svc, err := r.Queries.GetService(ctx, id)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			res.Drifted[DriftOrphan]++
			log.Warn("a VM carries the tag of a service this fleet does not know; left alone")
			continue
		case err != nil:
			return fmt.Errorf("load service %s: %w", id, err)
		}
		if mine, err := r.leftover(ctx, svc, vm.VMRef); err != nil || !mine {
			if err != nil {
				return err
			}
			continue
		}
		seen = append(seen, int32(vm.VMID))
		res.Drifted[DriftOrphan]++
		first, err := r.Queries.SeeOrphanVM(ctx, queries.SeeOrphanVMParams{Node: vm.Node, Vmid: int32(vm.VMID), ServiceID: id})
		if err != nil {
			return fmt.Errorf("record orphan VM %d: %w", vm.VMID, err)
		}
		if time.Since(first) < grace {
			log.Warn("a VM of ours belongs to no live service; destroyed once the grace period ends", "service_status", svc.Status, "first_seen", first)
			continue
		}
		if err := r.destroyOrphan(ctx, vm.VMRef, id); err != nil {
			log.Error("could not destroy an orphan VM", "err", err)
			continue
		}
		log.Warn("destroyed a VM of ours that no live service owned", "service_status", svc.Status, "first_seen", first)
		res.Destroyed = append(res.Destroyed, vm.VMRef)
	}
	if seen == nil {
		seen = []int32{}
	}
	return r.Queries.ForgetOrphanVMs(ctx, seen)
}

// leftover reports whether a VM tagged for svc is a leftover of it: the
// service (read afresh) no longer points at it, no job is making or
// changing it, and its VMID was reserved for the service (the fleet made
// it; an operator's clone of the VM, at a VMID of their own, is not ours to
// destroy).
func (r *Reconciler) leftover(ctx context.Context, svc queries.Service, vm proxmox.VMRef) (bool, error) {
	if ref, err := ProxmoxRef(&svc); err == nil && ref.VMID == vm.VMID {
		return false, nil
	}
	if _, err := r.Queries.GetActiveServiceJob(ctx, nullUUID(svc.ID)); err == nil {
		return false, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return false, err
	}
	ids, err := r.Queries.ServiceVMIDs(ctx, svc.ID)
	if err != nil {
		return false, err
	}
	return slices.Contains(ids, int32(vm.VMID)), nil
}

// destroyOrphan stops and destroys a VM after checking, once more, that it
// carries the service's tag.
func (r *Reconciler) destroyOrphan(ctx context.Context, ref proxmox.VMRef, service uuid.UUID) error {
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
