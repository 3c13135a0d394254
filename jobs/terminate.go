package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// Terminate is the Proxmox Terminator: the VM is powered off,
// destroyed with purge (which frees its VMID), its backups are deleted, and
// the service is marked terminated. Its jobs' history stays.
func (w *VPSWorkers) Terminate(ctx context.Context, job *Job[TerminationArgs]) error {
	v, err := existingVM(w, job)
	if err != nil {
		return err
	}
	ref, _ := v.vm()
	p, err := v.power()
	if err != nil {
		return err
	}
	exists := func(ctx context.Context) (bool, error) {
		_, err := w.Proxmox.Config(ctx, ref)
		if errors.Is(err, proxmox.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	job.CommitAt("destroy")
	err = job.Steps(ctx,
		Step{"stop", func(ctx context.Context) error {
			if ok, err := exists(ctx); err != nil || !ok {
				return err
			}
			return p.ensure(proxmox.OpStop)(ctx)
		}},
		Step{"destroy", func(ctx context.Context) error { return v.destroy(ctx, ref) }},
		Step{"backups", func(ctx context.Context) error { return v.prune(ctx, -1) }},
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
