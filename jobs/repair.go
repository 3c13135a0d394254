package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// InstallRecord is what a VPS was last installed from, stored in
// services.install by provisions and reinstalls (before anything is
// destroyed), so that a repair can make the VM again as it was.
type InstallRecord struct {
	// Template is the template cloned, on the VM's node.
	Template proxmox.VMRef `json:"template"`
	Install
	// Name, Net0 and IPConfig0 are the VM's name, network device (its MAC
	// address, so DHCP hands out the same addresses) and IP configuration.
	Name      string `json:"name,omitempty"`
	Net0      string `json:"net0,omitempty"`
	IPConfig0 string `json:"ipconfig0,omitempty"`
}

// ServiceInstall reads what a service was last installed from; ok is false
// when nothing was recorded (a registered VM).
func ServiceInstall(svc *queries.Service) (rec InstallRecord, ok bool) {
	if json.Unmarshal(svc.Install, &rec) != nil || rec.Template.VMID == 0 {
		return InstallRecord{}, false
	}
	return rec, true
}

// recordInstall records the install on the service: the job's template, in,
// and the network identity of the VM (kept from the VM it replaces, or read
// from its configuration; none while it is not made yet). Jobs record it
// when they pass their point of no return, and again when they end.
func (v *vpsJob) recordInstall(ctx context.Context, in Install) error {
	rec := InstallRecord{Install: in}
	if _, err := v.run.Get("template", &rec.Template); err != nil {
		return err
	}
	var k kept
	if ok, err := v.run.Get("kept", &k); err != nil {
		return err
	} else if ok {
		rec.Name, rec.Net0, rec.IPConfig0 = k.Name, k.Net0, k.IPConfig0
	} else {
		ref, err := v.vm()
		if err != nil {
			return err
		}
		cfg, err := v.w.Proxmox.Config(ctx, ref)
		switch {
		case err == nil:
			rec.Name, rec.Net0, rec.IPConfig0 = cfg.Name, cfg.Raw["net0"], cfg.Raw["ipconfig0"]
		case !errors.Is(err, proxmox.ErrNotFound):
			return err
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := v.w.Queries.SetServiceInstall(ctx, queries.SetServiceInstallParams{ID: v.svc.ID, Install: b}); err != nil {
		return fmt.Errorf("record the install: %w", err)
	}
	return nil
}

// RepairArgs ask for a VPS that needs repair (its VM missing, half-made or
// not its own) to be brought back.
type RepairArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// TemplateID, when set, is the template to make the VM from instead of
	// the recorded one (a registered service has none recorded).
	TemplateID int `json:"templateId,omitempty"`
}

// Kind implements Args.
func (RepairArgs) Kind() string { return "vps.repair" }

// InsertOpts gives a repair a clone's time.
func (RepairArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: time.Hour, Mutating: true}
}

// RepairResult is what a finished repair reports.
type RepairResult struct {
	Node string `json:"node"`
	VMID int    `json:"vmid"`
	// Action says what the repair found and did: "verified" (the VM was
	// the service's and is running again), "recloned" (the VM was missing
	// and was made again at its VMID) or "moved" (another VM has the VMID:
	// the service's VM was made at a new one, keeping its addresses).
	Action string `json:"action"`
}

// Repair implements Worker for RepairArgs. It looks at what the service's
// reference points at and:
//   - a VM of the service's own (complete or half-made): waits for a clone
//     in progress, applies the plan and cloud-init, grows the disk, starts it;
//   - no VM: clones the recorded template to the same VMID (reserved for the
//     service) with the recorded network device and IP configuration;
//   - someone else's VM: leaves it alone and makes the service's VM at a new
//     VMID with the same network identity, and moves the service there;
//   - no reference at all (a provision that never finished): places a new VM
//     as a provision does.
//
// The service is active again (suspended if a suspension reason remains)
// only once its VM runs.
func (w *VPSWorkers) Repair(ctx context.Context, job *Job[RepairArgs]) error {
	if job.Service == nil || job.Service.Provider != proxmox.Provider {
		return permanent(job.Args.Kind(), "repair needs a Proxmox service")
	}
	plan, err := ServicePlan(job.Service)
	if err != nil {
		return err
	}
	var secrets InstallSecrets
	if _, err := job.OpenSecrets(&secrets); err != nil {
		return err
	}
	rec, _ := ServiceInstall(job.Service)
	v := newVPSJob(w, job)
	job.CommitAt("clone")
	err = job.Steps(ctx,
		Step{"inspect", func(ctx context.Context) error { return v.inspectForRepair(ctx, rec, job.Args.TemplateID) }},
		Step{"clone", func(ctx context.Context) error { return v.clone(ctx, rec.Name) }},
		Step{"configure", func(ctx context.Context) error {
			values := installConfig(v.svc.ID, plan, rec.Install, secrets)
			var k kept
			if _, err := job.Get("kept", &k); err != nil {
				return err
			}
			if k.Net0 != "" {
				values["net0"] = k.Net0
			}
			if k.IPConfig0 != "" {
				values["ipconfig0"] = k.IPConfig0
			}
			return v.configure(ctx, values)
		}},
		Step{"resize", func(ctx context.Context) error { return v.growDisk(ctx, plan.DiskGB) }},
		// A suspended service comes back suspended: start leaves its VM off.
		Step{"start", v.start},
		Step{"agent", v.waitAgent},
	)
	if err != nil {
		return v.stopped(ctx, err)
	}
	ref, err := v.vm()
	if err != nil {
		return err
	}
	if err := v.recordInstall(ctx, rec.Install); err != nil {
		return err
	}
	b, _ := json.Marshal(ref)
	if err := w.Queries.SetServiceRepaired(ctx, queries.SetServiceRepairedParams{ID: job.Service.ID, ProviderRef: b}); err != nil {
		return fmt.Errorf("record the repaired VM: %w", err)
	}
	var action string
	if _, err := job.Get("action", &action); err != nil {
		return err
	}
	job.SetResult(RepairResult{Node: ref.Node, VMID: ref.VMID, Action: action})
	return nil
}

// inspectForRepair decides where the service's VM is to be (see Repair) and
// records it with the template and the network identity to keep.
func (v *vpsJob) inspectForRepair(ctx context.Context, rec InstallRecord, templateID int) error {
	template := rec.Template
	if templateID != 0 {
		template = proxmox.VMRef{VMID: templateID}
	}
	ref, err := ProxmoxRef(v.svc)
	if err != nil {
		// Never provisioned to the end: a clone of its own at a VMID
		// reserved for it, or else place it as a provision would.
		found, err := v.madeVM(ctx)
		if err != nil {
			return err
		}
		if found == nil {
			if template.VMID == 0 {
				return permanent("inspect", "the service has no VM and no recorded template; give templateId")
			}
			if err := v.run.Set(ctx, "action", "provisioned"); err != nil {
				return err
			}
			return v.place(ctx, template.VMID)
		}
		ref = *found
	}
	keep := kept{Name: rec.Name, Net0: rec.Net0, IPConfig0: rec.IPConfig0}
	cfg, err := v.w.Proxmox.Config(ctx, ref)
	action := "recloned"
	switch {
	case err == nil && ownedBy(cfg, v.svc.ID):
		action = "verified"
		keep = kept{Name: cmp.Or(cfg.Name, rec.Name), Net0: cmp.Or(cfg.Raw["net0"], rec.Net0), IPConfig0: cmp.Or(cfg.Raw["ipconfig0"], rec.IPConfig0)}
	case err == nil && rec.Net0 != "" && strings.EqualFold(macOf(cfg.Raw["net0"]), macOf(rec.Net0)):
		// The service's network device, without its tag (its configuration
		// came back from an archive made before it had one): ours.
		action = "verified"
		keep = kept{Name: cfg.Name, Net0: cfg.Raw["net0"], IPConfig0: cmp.Or(cfg.Raw["ipconfig0"], rec.IPConfig0)}
		if err := tagVM(ctx, v.w.Proxmox, ref, cfg, v.svc.ID); err != nil {
			return err
		}
	case err == nil:
		action = "moved"
		id, err := v.reserveVMID(ctx, 0)
		if err != nil {
			return err
		}
		v.log.Warn("another VM has the service's VMID; making the service's VM at a new one", "vmid", ref.VMID, "new_vmid", id)
		ref.VMID = id
	case !errors.Is(err, proxmox.ErrNotFound):
		return err
	default:
		n, err := v.w.Queries.ReserveVMID(ctx, queries.ReserveVMIDParams{Vmid: int32(ref.VMID), ServiceID: v.svc.ID})
		if err != nil {
			return fmt.Errorf("reserve VMID %d: %w", ref.VMID, err)
		}
		if n == 0 {
			action = "moved"
			if ref.VMID, err = v.reserveVMID(ctx, 0); err != nil {
				return err
			}
		}
	}
	if action != "verified" {
		if template.VMID == 0 {
			return permanent("inspect", fmt.Sprintf("the service's VM %d is gone and no template was recorded for it; give templateId", ref.VMID))
		}
		t, err := v.templateOn(ctx, template.VMID, ref.Node)
		if err != nil {
			return err
		}
		if err := v.run.Set(ctx, "template", t); err != nil {
			return err
		}
	} else if err := v.run.Set(ctx, "template", template); err != nil {
		return err
	}
	if err := v.run.Set(ctx, "kept", keep); err != nil {
		return err
	}
	if err := v.run.Set(ctx, "action", action); err != nil {
		return err
	}
	return v.run.Set(ctx, "vm", ref)
}

// madeVM returns a VM of the service's own at one of the VMIDs reserved
// for it (a provision that ended before it recorded its VM), or nil.
func (v *vpsJob) madeVM(ctx context.Context) (*proxmox.VMRef, error) {
	ids, err := v.w.Queries.ServiceVMIDs(ctx, v.svc.ID)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	inv, err := v.w.Proxmox.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		ref, ok := inv.ByVMID(int(id))
		if !ok {
			continue
		}
		cfg, err := v.w.Proxmox.Config(ctx, ref)
		if err != nil && !errors.Is(err, proxmox.ErrNotFound) {
			return nil, err
		}
		if err == nil && ownedBy(cfg, v.svc.ID) {
			return &ref, nil
		}
	}
	return nil, nil
}

// macOf reads the MAC address out of a network device's configuration
// ("virtio=BC:24:11:00:64:00,bridge=vmbr0").
func macOf(net string) string {
	model, _, _ := strings.Cut(net, ",")
	_, mac, _ := strings.Cut(model, "=")
	return mac
}

// ErrVMTaken is wrapped by ClaimVM's error when the VM is another
// service's.
var ErrVMTaken = errors.New("the VM belongs to another service")

// ClaimVM marks an existing VM, registered for a service rather than made
// by it, as the service's: it adds the service's tag, so that every job can
// check before it acts that the VM is still the service's own. A VM that
// carries another service's tag or description is refused (ErrVMTaken);
// one that is the service's already is left as it is. reserve, when set,
// is called once the VM is found free and before it is tagged, and says
// whether the service could reserve its VMID (ErrVMTaken when not).
func ClaimVM(ctx context.Context, c *proxmox.Client, ref proxmox.VMRef, service uuid.UUID, reserve func(context.Context) (bool, error)) error {
	cfg, err := c.Config(ctx, ref)
	if err != nil {
		return err
	}
	if !ownedBy(cfg, service) && (cfg.Raw["template"] == "1" || strings.Contains(cfg.Raw["description"], "provisiond service ") ||
		slices.ContainsFunc(cfg.Tags, func(t string) bool { return strings.HasPrefix(t, "svc-") })) {
		return ErrVMTaken
	}
	if reserve != nil {
		if ok, err := reserve(ctx); err != nil || !ok {
			return cmpErr(err, ErrVMTaken)
		}
	}
	if ownedBy(cfg, service) {
		return nil
	}
	return tagVM(ctx, c, ref, cfg, service)
}

// tagVM adds the service's tag to the VM whose configuration cfg is,
// refused by PVE if the configuration changed since it was read.
func tagVM(ctx context.Context, c *proxmox.Client, ref proxmox.VMRef, cfg proxmox.VMConfig, service uuid.UUID) error {
	tags := append(slices.Clone(cfg.Tags), "provisiond", VMTag(service))
	slices.Sort(tags)
	return c.SetConfig(ctx, ref, map[string]any{"tags": strings.Join(slices.Compact(tags), ";")}, cfg.Digest)
}
