package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// ResizeArgs ask for a VPS to be brought to new plan limits.
type ResizeArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Plan is the whole new plan; its disk is never smaller than the
	// current one (the API refuses that before a job exists).
	Plan Plan `json:"plan"`
	// Reason is what asked: upgrade, change-plan or downgrade.
	Reason string `json:"reason"`
}

// Kind implements Args.
func (ResizeArgs) Kind() string { return "vps.resize" }

// InsertOpts implements ArgsWithInsertOpts.
func (ResizeArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: 30 * time.Minute, Mutating: true}
}

// ResizeResult is what a finished resize reports.
type ResizeResult struct {
	Plan      Plan `json:"plan"`
	Restarted bool `json:"restarted"`
}

// Resize implements Worker for ResizeArgs. CPU and memory changes of a
// running VM take effect only after a restart in Proxmox, so such a VM is
// shut down for the change and started again; a disk grows online. The
// service's plan follows only once Proxmox has applied it.
func (w *VPSWorkers) Resize(ctx context.Context, job *Job[ResizeArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	plan := job.Args.Plan
	type before struct {
		Running, CPUMem bool
	}
	var was before
	// Once the configuration changes, the rest of the plan follows and a
	// VM stopped for it starts again.
	job.CommitAt("configure")
	err = job.Steps(ctx,
		Step{"inspect", func(ctx context.Context) error {
			ref, _ := v.vm()
			cfg, err := w.Proxmox.Config(ctx, ref)
			if err != nil {
				return err
			}
			st, err := w.Proxmox.State(ctx, ref)
			if err != nil {
				return err
			}
			if st.Lock != "" {
				return lockedErr("inspect", st.Lock)
			}
			return job.Set(ctx, "before", before{Running: !st.Stopped(),
				CPUMem: cfg.Cores != plan.Cores || cfg.MemoryMB != plan.MemoryMB})
		}},
		Step{"stop", func(ctx context.Context) error {
			if _, err := job.Get("before", &was); err != nil || !was.Running || !was.CPUMem {
				return err
			}
			return v.powerOff(true)(ctx)
		}},
		Step{"configure", func(ctx context.Context) error {
			return v.configure(ctx, map[string]any{"cores": plan.Cores, "memory": plan.MemoryMB})
		}},
		Step{"resize", func(ctx context.Context) error { return v.growDisk(ctx, plan.DiskGB) }},
		Step{"start", func(ctx context.Context) error {
			if _, err := job.Get("before", &was); err != nil || !was.Running {
				return err
			}
			return v.start(ctx)
		}},
	)
	if err != nil {
		return v.stopped(ctx, err)
	}
	if err := w.savePlan(ctx, job.Service, plan); err != nil {
		return err
	}
	job.SetResult(ResizeResult{Plan: plan, Restarted: was.Running && was.CPUMem})
	return nil
}

// existingVM returns a job's view of its service's VM, which must exist.
func existingVM[T Args](ctx context.Context, w *VPSWorkers, job *Job[T]) (*vpsJob, error) {
	if job.Service == nil || job.Service.Provider != proxmox.Provider {
		return nil, permanent(job.Row.Kind, "this job needs a Proxmox service")
	}
	ref, err := locateVM(ctx, w.Proxmox, w.Queries, job.Service, job.Log)
	if err != nil {
		return nil, err
	}
	v := newVPSJob(w, job)
	v.ref = &ref
	return v, nil
}

// locateVM returns where the service's VM is now: at its reference or,
// when that node no longer has it (PVE moved it: a migration, HA), on the
// node the cluster lists it on, provided it is the service's own there; the
// service's reference follows it. A VM found nowhere is left to the job's
// own checks (a destroy's retry, or the service needs repair).
func locateVM(ctx context.Context, c *proxmox.Client, q *queries.Queries, svc *queries.Service, log *slog.Logger) (proxmox.VMRef, error) {
	ref, err := ProxmoxRef(svc)
	if err != nil {
		return ref, err
	}
	if _, err := c.Config(ctx, ref); !errors.Is(err, proxmox.ErrNotFound) {
		return ref, err
	}
	inv, err := c.Inventory(ctx)
	if err != nil {
		return ref, err
	}
	moved, ok := inv.ByVMID(ref.VMID)
	if !ok || moved == ref {
		return ref, nil
	}
	cfg, err := c.Config(ctx, moved)
	if err != nil || !ownedBy(cfg, svc.ID) {
		return ref, err
	}
	b, _ := json.Marshal(moved)
	if err := q.SetServiceProviderRef(ctx, queries.SetServiceProviderRefParams{ID: svc.ID, ProviderRef: b}); err != nil {
		return ref, fmt.Errorf("record the VM's node: %w", err)
	}
	log.Info("the service's VM moved to another node", "from", ref.Node, "node", moved.Node, "vmid", ref.VMID)
	svc.ProviderRef = b
	return moved, nil
}

// ServiceVM returns the service's VM for a live read: where it is now (see
// locateVM), checked to be the service's own. A VM that is gone or another's
// is not read: the service is marked needs_repair and the error wraps
// ErrNeedsRepair.
func ServiceVM(ctx context.Context, c *proxmox.Client, q *queries.Queries, svc *queries.Service, log *slog.Logger) (proxmox.VMRef, error) {
	ref, err := locateVM(ctx, c, q, svc, log)
	if err != nil {
		return ref, err
	}
	verr := (&pveTasks{c: c, owner: svc.ID}).verifyOwn(ctx, ref)
	if !errors.Is(verr, ErrNeedsRepair) {
		return ref, verr
	}
	n, err := q.FlagServiceNeedsRepair(ctx, queries.FlagServiceNeedsRepairParams{ID: svc.ID, RepairReason: failure.UserMessage(verr)})
	if err != nil {
		return ref, fmt.Errorf("mark service %s needs_repair: %w", svc.ID, err)
	}
	if n == 0 && svc.Status != "needs_repair" {
		// A job is changing the VM (a reinstall between its destroy and
		// its clone): it is not the reader's to judge.
		return ref, ErrServiceBusy
	}
	log.Warn("a read found the service's VM gone or not its own", "node", ref.Node, "vmid", ref.VMID, "err", verr)
	svc.Status, svc.RepairReason = "needs_repair", failure.UserMessage(verr)
	return ref, verr
}

// ErrServiceBusy is returned by ServiceVM when a job is changing the
// service's VM, so that it cannot be judged now.
var ErrServiceBusy = errors.New("a job is changing the service's VM")

// savePlan records plan as the service's plan.
func (w *VPSWorkers) savePlan(ctx context.Context, svc *queries.Service, plan Plan) error {
	b, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	if err := w.Queries.SetServicePlan(ctx, queries.SetServicePlanParams{ID: svc.ID, Plan: b}); err != nil {
		return fmt.Errorf("record the plan: %w", err)
	}
	return nil
}

// lockedErr says the VM is busy with another Proxmox operation; it clears
// by itself.
func lockedErr(op, lock string) error {
	return &failure.Error{Class: failure.Transient, Provider: proxmox.Provider, Op: op,
		Message: fmt.Sprintf("VM is locked (%s)", lock)}
}
