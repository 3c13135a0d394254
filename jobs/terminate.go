package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// Terminate is the Proxmox Terminator: the VM is powered off,
// destroyed with purge (which frees its VMID), its backups are deleted, and
// the service is marked terminated. Its jobs' history stays. A VM at the
// service's VMID that is not the service's (the VMID went to someone else)
// is left alone, with its backups: only the archives the service's own
// backups made go.
func (w *VPSWorkers) Terminate(ctx context.Context, job *Job[TerminationArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	ref, _ := v.vm()
	p, err := v.power()
	if err != nil {
		return err
	}
	// present says whether the service's own VM is there to end.
	present := func(ctx context.Context) (bool, error) {
		err := v.tasks.verifyOwn(ctx, ref)
		if errors.Is(err, ErrNeedsRepair) {
			var foreign bool
			if !errors.Is(err, errVMGone) {
				job.Log.Warn("the VM at the service's VMID is not the service's; it is left alone", "vmid", ref.VMID)
				foreign = true
			}
			return false, job.Set(ctx, "foreign", foreign)
		}
		return err == nil, err
	}
	job.CommitAt("destroy")
	err = job.Steps(ctx,
		Step{"stop", func(ctx context.Context) error {
			if ok, err := present(ctx); err != nil || !ok {
				return err
			}
			return p.ensure(proxmox.OpStop)(ctx)
		}},
		Step{"destroy", func(ctx context.Context) error {
			if ok, err := present(ctx); err != nil || !ok {
				return err
			}
			return v.destroy(ctx, ref)
		}},
		Step{"backups", func(ctx context.Context) error {
			var foreign bool
			if _, err := job.Get("foreign", &foreign); err != nil {
				return err
			}
			if !foreign {
				return v.prune(ctx, -1, nil)
			}
			mark := vmDescription(job.Service.ID)
			return v.prune(ctx, -1, func(b Backup) bool { return strings.Contains(b.Note, mark) })
		}},
	)
	if err != nil {
		return v.stopped(ctx, err)
	}
	if err := w.Queries.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: job.Service.ID, Status: "terminated"}); err != nil {
		return fmt.Errorf("record termination: %w", err)
	}
	if err := w.Queries.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: job.Service.ID, PowerState: "stopped"}); err != nil {
		return fmt.Errorf("record power state: %w", err)
	}
	return nil
}
