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

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// This file is the Proxmox provider: VPSWorkers implements Provider and its
// capabilities; its job kinds (vps.*) live in provision.go, reinstall.go,
// resize.go, backup.go, rescue.go, console.go, ips.go and repair.go.

// Name implements Provider.
func (w *VPSWorkers) Name() string { return proxmox.Provider }

// Title implements Provider.
func (w *VPSWorkers) Title() string { return "Proxmox" }

// AddWorkers implements WorkerSet: the VPS job kinds.
func (w *VPSWorkers) AddWorkers(ws *Workers) {
	AddWorker(ws, WorkFunc[ProvisionArgs](w.Provision))
	AddWorker(ws, WorkFunc[ResizeArgs](w.Resize))
	AddWorker(ws, WorkFunc[ReinstallArgs](w.Reinstall))
	AddWorker(ws, WorkFunc[BackupArgs](w.Backup))
	AddWorker(ws, WorkFunc[RestoreArgs](w.Restore))
	AddWorker(ws, WorkFunc[BackupDeleteArgs](w.DeleteBackup))
	AddWorker(ws, WorkFunc[RescueArgs](w.Rescue))
	AddWorker(ws, WorkFunc[ConsoleArgs](w.Console))
	AddWorker(ws, WorkFunc[ReleaseIPArgs](w.ReleaseIP))
	AddWorker(ws, WorkFunc[RepairArgs](w.Repair))
}

// ProxmoxRef reads the VM a Proxmox service lives on.
func ProxmoxRef(svc *queries.Service) (proxmox.VMRef, error) {
	var ref proxmox.VMRef
	if err := json.Unmarshal(svc.ProviderRef, &ref); err != nil || ref.Node == "" || ref.VMID <= 0 {
		return ref, permanent("proxmox", "the service has no Proxmox VM yet")
	}
	return ref, nil
}

// PowerActions implements PowerController: all of them.
func (w *VPSWorkers) PowerActions() []string { return PowerActions }

// Power implements PowerController.
func (w *VPSWorkers) Power(ctx context.Context, job *Job[PowerArgs]) error {
	ref, err := locateVM(ctx, w.Proxmox, w.Queries, job.Service, job.Log)
	if err != nil {
		return err
	}
	vm := &pvePower{c: w.Proxmox, tasks: newPVETasks(w.Proxmox, job.Run, job.Log, job.Service.ID), ref: ref, run: job.Run, log: job.Log, shutdownTimeout: w.ShutdownTimeout}
	var steps []Step
	switch job.Args.Action {
	case "start":
		steps = []Step{{"start", vm.ensure(proxmox.OpStart)}}
	case "stop", "kill":
		steps = []Step{{"stop", vm.ensure(proxmox.OpStop)}}
	case "restart":
		// Once the guest goes down it comes up again, cancelled or not.
		job.CommitAt("shutdown")
		steps = []Step{{"shutdown", vm.shutdown}, {"start", vm.ensure(proxmox.OpStart)}}
	case "reset":
		steps = []Step{{"reset", vm.ensure(proxmox.OpReset)}}
	case "suspend":
		steps = []Step{{"suspend", vm.ensure(proxmox.OpSuspend)}}
	case "resume":
		steps = []Step{{"resume", vm.ensure(proxmox.OpResume)}}
	default:
		return permanent(job.Args.Kind(), fmt.Sprintf("unknown power action %q", job.Args.Action))
	}
	if err := job.Steps(ctx, steps...); err != nil {
		return err
	}
	st, err := w.Proxmox.State(ctx, ref)
	if err != nil {
		return err
	}
	return recordPower(ctx, w.Queries, job, st.PowerState())
}

// pvePower drives one VM to a power state through resumable steps.
type pvePower struct {
	c               *proxmox.Client
	tasks           *pveTasks
	ref             proxmox.VMRef
	run             *Run
	log             *slog.Logger
	shutdownTimeout time.Duration
}

// ensure returns a step that brings the VM to the state op leads to: it does
// nothing when the VM is there already, waits on a task an earlier attempt
// started, and otherwise starts the task and waits for it.
func (p *pvePower) ensure(op proxmox.PowerOp) func(context.Context) error {
	return func(ctx context.Context) error {
		err := p.tasks.do(ctx, pveOp{Key: string(op), VM: p.ref,
			Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
				return p.plan(ctx, op)
			},
			Check: func(ctx context.Context) error {
				st, err := p.c.State(ctx, p.ref)
				if err != nil {
					return err
				}
				if op == proxmox.OpReset && st.Running() || reached(op, st) {
					return nil
				}
				return notSeen(string(op), fmt.Sprintf("after its %s task, VM %d on %s is %s", op, p.ref.VMID, p.ref.Node, st.PowerState()))
			},
		})
		if err == nil || !errors.Is(err, proxmox.ErrTaskFailed) {
			return err
		}
		if st, serr := p.c.State(ctx, p.ref); serr == nil && reached(op, st) {
			return nil // e.g. "already running": someone else got it there
		}
		return err
	}
}

// plan decides what op needs given the VM's state.
func (p *pvePower) plan(ctx context.Context, op proxmox.PowerOp) (string, func(context.Context) (string, error), error) {
	st, err := p.c.State(ctx, p.ref)
	if err != nil {
		return "", nil, err
	}
	if reached(op, st) {
		p.log.Info("VM is in the wanted state already", "op", op, "state", st.PowerState())
		return "", nil, nil
	}
	if st.Lock != "" {
		return "", nil, lockedErr(string(op), st.Lock)
	}
	eff := effective(op, st)
	if eff == "" {
		return "", nil, nil
	}
	return eff.TaskType(), func(ctx context.Context) (string, error) {
		upid, err := p.c.Power(ctx, p.ref, eff, proxmox.PowerOptions{ShutdownTimeout: p.shutdownTimeout})
		if err != nil {
			if st, serr := p.c.State(ctx, p.ref); serr == nil && reached(op, st) {
				return "", nil
			}
			return "", err
		}
		return upid, nil
	}, nil
}

// shutdown asks the guest to shut down and powers it off hard when it does
// not do so in time.
func (p *pvePower) shutdown(ctx context.Context) error {
	var hard bool
	if _, err := p.run.Recall("hard", &hard); err != nil {
		return err
	}
	if !hard {
		err := p.ensure(proxmox.OpShutdown)(ctx)
		if err == nil || !errors.Is(err, proxmox.ErrTaskFailed) {
			return err
		}
		p.log.Warn("guest did not shut down; powering it off", "reason", failure.UserMessage(err))
		if err := p.run.Remember(ctx, "hard", true); err != nil {
			return err
		}
	}
	return p.ensure(proxmox.OpStop)(ctx)
}

// reached reports whether the VM is where op would take it. A reset has no
// such state: it always runs.
func reached(op proxmox.PowerOp, st proxmox.State) bool {
	switch op {
	case proxmox.OpStart, proxmox.OpResume:
		return st.Running()
	case proxmox.OpStop, proxmox.OpShutdown:
		return st.Stopped()
	case proxmox.OpSuspend:
		return st.Paused() || st.Stopped()
	}
	return false
}

// effective returns the operation that gets a VM in state st where op means
// to take it, or "" when there is nothing to do.
func effective(op proxmox.PowerOp, st proxmox.State) proxmox.PowerOp {
	switch {
	case op == proxmox.OpReset && st.Stopped():
		return proxmox.OpStart // a reset of a stopped VM boots it
	case op == proxmox.OpStart && st.Paused():
		return proxmox.OpResume
	case op == proxmox.OpShutdown && st.Paused():
		return proxmox.OpStop // a paused guest cannot react to ACPI
	case op == proxmox.OpResume && st.Stopped():
		return "" // nothing to resume; booting it is the customer's call
	}
	return op
}

// Verify implements Verifier: the VM must be the service's own, in the
// recorded power state, with the plan's resources, out of rescue and not
// locked by a task that no longer runs.
func (w *VPSWorkers) Verify(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]Drift, error) {
	if _, err := ProxmoxRef(svc); err != nil {
		return nil, nil // never provisioned: nothing to compare
	}
	ref, err := ServiceVM(ctx, w.Proxmox, w.Queries, svc, log)
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
	cfg, err := w.Proxmox.Config(ctx, ref)
	if err != nil {
		return nil, err
	}
	st, err := w.Proxmox.State(ctx, ref)
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
		if err := w.Queries.FollowPowerState(ctx, queries.FollowPowerStateParams{ID: svc.ID, PowerState: got, Was: svc.PowerState}); err != nil {
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
	if strings.HasPrefix(cfg.Boot, "order=ide2") && strings.HasPrefix(cfg.IDE2, w.rescueISO()) {
		drift = append(drift, Drift{Kind: DriftRescue, Detail: "the VM boots the rescue system; DELETE /rescue ends it"})
	}
	if cfg.Lock != "" {
		busy, err := w.Proxmox.Busy(ctx, ref)
		if err != nil {
			return nil, err
		}
		if !busy {
			drift = append(drift, Drift{Kind: DriftLocked, Detail: fmt.Sprintf("the VM is locked (%s) with no task running; an operator must check it and unlock it (qm unlock %d)", cfg.Lock, ref.VMID)})
		}
	}
	return drift, nil
}

// Resource implements Verifier: the VM's VMID.
func (w *VPSWorkers) Resource(svc *queries.Service) (string, bool) {
	ref, err := ProxmoxRef(svc)
	return strconv.Itoa(ref.VMID), err == nil
}

// Marked implements Verifier: the VMs that carry a service's tag. A VM's
// tag is not proof enough that the fleet made it: its VMID must have been
// reserved for the service too (an operator's clone of the VM, at a VMID of
// their own, is not ours to destroy).
func (w *VPSWorkers) Marked(ctx context.Context, log *slog.Logger) ([]Marked, error) {
	inv, err := w.Proxmox.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	var found []Marked
	for _, vm := range inv.Tagged("svc-") {
		id, err := uuid.Parse(strings.TrimPrefix(vm.Tag, "svc-"))
		if err != nil {
			continue
		}
		found = append(found, Marked{Resource: strconv.Itoa(vm.VMID),
			Name: fmt.Sprintf("proxmox VM %d on %s", vm.VMID, vm.Node), Service: id,
			Log: log.With("service_id", id, "provider", proxmox.Provider, "node", vm.Node, "vmid", vm.VMID),
			Ours: func(ctx context.Context, svc queries.Service) (bool, error) {
				ids, err := w.Queries.ServiceVMIDs(ctx, svc.ID)
				return slices.Contains(ids, int32(vm.VMID)), err
			},
			Delete: func(ctx context.Context) error { return w.destroyMarked(ctx, vm.VMRef, id) },
		})
	}
	return found, nil
}

// destroyMarked stops and destroys a VM after checking, once more, that it
// carries the service's tag.
func (w *VPSWorkers) destroyMarked(ctx context.Context, ref proxmox.VMRef, service uuid.UUID) error {
	cfg, err := w.Proxmox.Config(ctx, ref)
	if err != nil {
		return err
	}
	if !slices.Contains(cfg.Tags, VMTag(service)) {
		return fmt.Errorf("VM %d no longer carries %s", ref.VMID, VMTag(service))
	}
	if st, err := w.Proxmox.State(ctx, ref); err != nil {
		return err
	} else if !st.Stopped() {
		upid, err := w.Proxmox.Power(ctx, ref, proxmox.OpStop, proxmox.PowerOptions{})
		if err != nil {
			return err
		}
		if _, err := w.Proxmox.WaitTask(ctx, upid); err != nil {
			return err
		}
	}
	upid, err := w.Proxmox.Destroy(ctx, ref)
	if err != nil {
		return err
	}
	_, err = w.Proxmox.WaitTask(ctx, upid)
	return err
}

// UsageGroup implements UsageReader: a node's VMs are read in one call.
func (w *VPSWorkers) UsageGroup(svc *queries.Service) string {
	ref, _ := ProxmoxRef(svc)
	return ref.Node
}

// Usage implements UsageReader: the node's VMs in one call.
func (w *VPSWorkers) Usage(ctx context.Context, node string, svcs []queries.Service) (map[uuid.UUID]Usage, error) {
	vms, err := w.Proxmox.NodeUsage(ctx, node)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]Usage, len(svcs))
	for _, s := range svcs {
		ref, err := ProxmoxRef(&s)
		if err != nil || ref.Node != node {
			continue // moved since the round: the next round finds it
		}
		vm, ok := vms[ref.VMID]
		if !ok {
			out[s.ID] = Usage{} // gone from its node: not running
			continue
		}
		running := vm.Status == "running" && vm.QMPStatus != "paused"
		out[s.ID] = Usage{Online: running, CPU: min(100, vm.CPU*100), Memory: percent(float64(vm.Mem), float64(vm.MaxMem)),
			Disk: percent(float64(vm.Disk), float64(vm.MaxDisk)), NetIn: int64(vm.NetIn), NetOut: int64(vm.NetOut)}
	}
	return out, nil
}

// percent is part of whole in percent, at most 100.
func percent(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return min(100, part/whole*100)
}
