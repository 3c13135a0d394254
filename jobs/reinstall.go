package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// ReinstallArgs ask for a VPS to be installed afresh from a template.
type ReinstallArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	Install
}

// Kind implements Args.
func (ReinstallArgs) Kind() string { return "vps.reinstall" }

// InsertOpts implements ArgsWithInsertOpts.
func (ReinstallArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: time.Hour, Mutating: true}
}

// kept is what a reinstall carries over from the old VM.
type kept struct {
	Name      string `json:"name"`
	Net0      string `json:"net0"`
	IPConfig0 string `json:"ipconfig0,omitempty"`
}

// Reinstall implements Worker for ReinstallArgs. It re-images the VM in
// place: the old VM is destroyed and the template cloned to the same VMID
// on the same node, with the old network device (so the MAC address, and
// with it the addresses DHCP hands out, stay) and IP configuration. The VMID
// staying keeps everything that names it: the service's record, backups,
// firewall rules and usage history. Swapping in a disk cloned to another
// VMID would avoid the moment without a VM, but needs PVE's disk reassign,
// which differs between versions; each step here is resumable instead.
func (w *VPSWorkers) Reinstall(ctx context.Context, job *Job[ReinstallArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	plan, err := ServicePlan(job.Service)
	if err != nil {
		return err
	}
	var secrets InstallSecrets
	if _, err := job.OpenSecrets(&secrets); err != nil {
		return err
	}
	ref, _ := v.vm()
	// From the destroy on, the re-image is carried through: a cancelled or
	// interrupted reinstall never leaves the service without its VM.
	job.CommitAt("destroy")
	err = job.Steps(ctx,
		Step{"inspect", func(ctx context.Context) error { return v.inspectForReinstall(ctx, job.Args.TemplateID) }},
		Step{"stop", v.powerOff(false)},
		Step{"destroy", func(ctx context.Context) error {
			// What the repair needs, should the re-image not end.
			if err := v.recordInstall(ctx, job.Args.Install); err != nil {
				return err
			}
			return v.destroy(ctx, ref)
		}},
		Step{"clone", func(ctx context.Context) error {
			var k kept
			if _, err := job.Get("kept", &k); err != nil {
				return err
			}
			return v.clone(ctx, cmp.Or(job.Args.Hostname, k.Name))
		}},
		Step{"configure", func(ctx context.Context) error {
			var k kept
			if _, err := job.Get("kept", &k); err != nil {
				return err
			}
			values := installConfig(v.svc.ID, plan, job.Args.Install, secrets)
			values["net0"] = k.Net0
			if k.IPConfig0 != "" {
				values["ipconfig0"] = k.IPConfig0
			}
			return v.configure(ctx, values)
		}},
		Step{"resize", func(ctx context.Context) error { return v.growDisk(ctx, plan.DiskGB) }},
		Step{"start", v.start},
		Step{"agent", v.waitAgent},
	)
	if err != nil {
		return v.stopped(ctx, err)
	}
	if err := w.Queries.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: job.Service.ID, PowerState: "running"}); err != nil {
		return fmt.Errorf("record power state: %w", err)
	}
	job.SetResult(ProvisionResult{Node: ref.Node, VMID: ref.VMID})
	return nil
}

// destroy removes the service's VM, checked to be its own first, and
// checks that it is gone; one an earlier attempt destroyed counts as done.
func (v *vpsJob) destroy(ctx context.Context, ref proxmox.VMRef) error {
	exists := func(ctx context.Context) (bool, error) {
		_, err := v.w.Proxmox.Config(ctx, ref)
		if errors.Is(err, proxmox.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	return v.tasks.do(ctx, pveOp{Key: "destroy", VM: ref, MayBeGone: true,
		Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
			if ok, err := exists(ctx); err != nil || !ok {
				return "", nil, err
			}
			return "qmdestroy", func(ctx context.Context) (string, error) { return v.w.Proxmox.Destroy(ctx, ref) }, nil
		},
		Check: func(ctx context.Context) error {
			if ok, err := exists(ctx); err != nil || !ok {
				return err
			}
			return notSeen("destroy", fmt.Sprintf("VM %d on %s still exists after its destroy task", ref.VMID, ref.Node))
		},
	})
}

// inspectForReinstall records what the new VM keeps from the old one and
// the template to clone on the VM's node.
func (v *vpsJob) inspectForReinstall(ctx context.Context, templateID int) error {
	ref, err := v.vm()
	if err != nil {
		return err
	}
	if err := v.tasks.verifyOwn(ctx, ref); err != nil {
		return err
	}
	cfg, err := v.w.Proxmox.Config(ctx, ref)
	if err != nil {
		return err
	}
	if cfg.Lock != "" {
		return lockedErr("inspect", cfg.Lock)
	}
	template, err := v.templateOn(ctx, templateID, ref.Node)
	if err != nil {
		return err
	}
	if err := v.run.Set(ctx, "template", template); err != nil {
		return err
	}
	return v.run.Set(ctx, "kept", kept{Name: cfg.Name, Net0: cfg.Raw["net0"], IPConfig0: cfg.Raw["ipconfig0"]})
}

// templateOn returns the template to clone on node: the chosen one, or
// without shared storage one of the same name there.
func (v *vpsJob) templateOn(ctx context.Context, templateID int, node string) (proxmox.VMRef, error) {
	templates, err := v.w.Proxmox.Templates(ctx)
	if err != nil {
		return proxmox.VMRef{}, err
	}
	i := slices.IndexFunc(templates, func(t proxmox.Template) bool { return t.VMID == templateID })
	if i < 0 {
		return proxmox.VMRef{}, permanent("inspect", fmt.Sprintf("template %d does not exist", templateID))
	}
	chosen := templates[i]
	if chosen.Node == node || v.w.Storage != "" {
		return chosen.VMRef, nil
	}
	j := slices.IndexFunc(templates, func(t proxmox.Template) bool { return t.Node == node && t.Name == chosen.Name })
	if j < 0 {
		return proxmox.VMRef{}, permanent("inspect", fmt.Sprintf("template %q is not on node %s, where the VM is", chosen.Name, node))
	}
	return templates[j].VMRef, nil
}
