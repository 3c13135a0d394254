package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// Plan is a service's plan limits, stored in services.plan.
type Plan struct {
	Cores    int `json:"cores"`
	MemoryMB int `json:"memoryMb"`
	DiskGB   int `json:"diskGb"`
	// BackupLimit is how many backups are kept; 0 means no limit.
	BackupLimit int `json:"backupLimit,omitempty"`
	// BackupPolicy says what creating a backup past the limit does:
	// "rotate" (the default) deletes the oldest, "refuse" refuses.
	BackupPolicy string `json:"backupPolicy,omitempty"`
	// AdditionalIPs are the addresses sold with the VPS beside its first;
	// each is configured as one of the VM's ipconfig1… entries.
	AdditionalIPs []string `json:"additionalIps,omitempty"`
}

// ServicePlan reads a service's plan.
func ServicePlan(svc *queries.Service) (Plan, error) {
	var p Plan
	if err := json.Unmarshal(svc.Plan, &p); err != nil {
		return p, permanent("plan", "the service's plan is unreadable")
	}
	return p, nil
}

// VMTag is the Proxmox tag that marks the VM of a service, so that a
// resumed or repeated provision finds the VM it made.
func VMTag(service uuid.UUID) string { return "svc-" + service.String() }

// vmDescription marks a clone as ours from the moment it exists, before it
// can be tagged.
func vmDescription(service uuid.UUID) string { return "provisiond service " + service.String() }

// Install is what a new or reinstalled VM is set up with.
type Install struct {
	// TemplateID is the VMID of the template to clone.
	TemplateID int    `json:"templateId"`
	Hostname   string `json:"hostname,omitempty"`
	// User is the cloud-init user; default root.
	User    string   `json:"user,omitempty"`
	SSHKeys []string `json:"sshKeys,omitempty"`
}

// InstallSecrets are sealed with a provision or reinstall job.
type InstallSecrets struct {
	Password string `json:"password,omitempty"`
}

// ProvisionArgs ask for a new VM for a pending Proxmox service.
type ProvisionArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	Install
}

// Kind implements Args.
func (ProvisionArgs) Kind() string { return "vps.provision" }

// InsertOpts gives a provision the time a full clone of a large template
// takes.
func (ProvisionArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: time.Hour, Mutating: true}
}

// ProvisionResult is what a finished provision reports.
type ProvisionResult struct {
	Node string `json:"node"`
	VMID int    `json:"vmid"`
}

// VPSWorkers carries out the Proxmox VPS jobs.
type VPSWorkers struct {
	Queries *queries.Queries
	Proxmox *proxmox.Client
	// Locations maps a service location to the nodes that serve it; a
	// location not listed may use every node.
	Locations map[string][]string
	// Storage is where clones' disks go; empty keeps the template's.
	Storage string
	// BackupStorage is where vzdump writes backups; default "local".
	BackupStorage string
	// RescueISO is the volume of the rescue system's ISO; default
	// "local:iso/rescue.iso".
	RescueISO string
	// ConsoleTTL is how long a console session may wait for its browser;
	// default a minute.
	ConsoleTTL time.Duration
	// ShutdownTimeout is how long a stop waits for the guest before it
	// powers the VM off hard.
	ShutdownTimeout time.Duration
	// AgentTimeout is how long a provision or reinstall waits, after the
	// start, for the guest agent of a VM whose configuration enables it;
	// default 3 minutes.
	AgentTimeout time.Duration
}

// vpsJob is one VPS job's view of its VM.
type vpsJob struct {
	w     *VPSWorkers
	run   *Run
	tasks *pveTasks
	svc   *queries.Service
	log   *slog.Logger
	// ref is the service's VM when the job did not make it.
	ref *proxmox.VMRef
}

func newVPSJob[T Args](w *VPSWorkers, job *Job[T]) *vpsJob {
	return &vpsJob{w: w, run: job.Run, svc: job.Service, log: job.Log,
		tasks: newPVETasks(w.Proxmox, job.Run, job.Log, job.Service.ID)}
}

// Provision implements Worker for ProvisionArgs.
func (w *VPSWorkers) Provision(ctx context.Context, job *Job[ProvisionArgs]) error {
	if job.Service == nil || job.Service.Provider != proxmox.Provider {
		return permanent(job.Args.Kind(), "provision needs a Proxmox service")
	}
	plan, err := ServicePlan(job.Service)
	if err != nil {
		return err
	}
	var secrets InstallSecrets
	if _, err := job.OpenSecrets(&secrets); err != nil {
		return err
	}
	v := newVPSJob(w, job)
	// Once the clone starts the VM is carried through to running: a
	// cancelled provision never leaves a half-made VM behind.
	job.CommitAt("clone")
	if err := job.Steps(ctx,
		Step{"place", func(ctx context.Context) error { return v.place(ctx, job.Args.TemplateID) }},
		Step{"clone", func(ctx context.Context) error {
			if err := v.recordInstall(ctx, job.Args.Install); err != nil {
				return err
			}
			return v.clone(ctx, job.Args.Hostname)
		}},
		Step{"configure", func(ctx context.Context) error {
			return v.configure(ctx, installConfig(v.svc.ID, plan, job.Args.Install, secrets))
		}},
		Step{"resize", func(ctx context.Context) error { return v.growDisk(ctx, plan.DiskGB) }},
		Step{"start", v.start},
		Step{"agent", v.waitAgent},
	); err != nil {
		return v.stopped(ctx, err)
	}
	ref, err := v.vm()
	if err != nil {
		return err
	}
	if err := v.recordInstall(ctx, job.Args.Install); err != nil {
		return err
	}
	b, _ := json.Marshal(ref)
	if err := w.Queries.SetServiceProvisioned(ctx, queries.SetServiceProvisionedParams{ID: job.Service.ID, ProviderRef: b}); err != nil {
		return fmt.Errorf("record the VM: %w", err)
	}
	job.SetResult(ProvisionResult{Node: ref.Node, VMID: ref.VMID})
	return nil
}

// vm returns the service's VM, or the VM the job placed.
func (v *vpsJob) vm() (proxmox.VMRef, error) {
	if v.ref != nil {
		return *v.ref, nil
	}
	var ref proxmox.VMRef
	ok, err := v.run.Get("vm", &ref)
	if err == nil && !ok {
		err = permanent("vm", "the job has no VM yet")
	}
	return ref, err
}

// place finds the VM an earlier provision of the service made, or picks a
// node and a VMID for a new one, and the template to clone there. Without
// shared storage (Storage) a clone stays on its template's node, so the
// nodes to choose from are those holding a template of the same name.
func (v *vpsJob) place(ctx context.Context, templateID int) error {
	inv, err := v.w.Proxmox.Inventory(ctx)
	if err != nil {
		return err
	}
	if ref, found := inv.ByTag(VMTag(v.svc.ID)); found {
		v.log.Info("the service's VM exists already", "node", ref.Node, "vmid", ref.VMID)
		return v.run.Set(ctx, "vm", ref)
	}
	templates := inv.Templates()
	i := slices.IndexFunc(templates, func(t proxmox.Template) bool { return t.VMID == templateID })
	if i < 0 {
		return permanent("place", fmt.Sprintf("template %d does not exist", templateID))
	}
	source := map[string]proxmox.VMRef{} // node → the template to clone there
	for _, t := range templates {
		if t.Name == templates[i].Name {
			source[t.Node] = t.VMRef
		}
	}
	node, err := v.pickNode(ctx, func(n string) bool { _, ok := source[n]; return ok || v.w.Storage != "" })
	if err != nil {
		return err
	}
	template, ok := source[node]
	if !ok {
		template = templates[i].VMRef
	}
	id, err := v.reserveVMID(ctx, 0)
	if err != nil {
		return err
	}
	if err := v.run.Set(ctx, "template", template); err != nil {
		return err
	}
	return v.run.Set(ctx, "vm", proxmox.VMRef{Node: node, VMID: id})
}

// reserveVMID picks a VMID that Proxmox calls free (nextid, or from if
// higher) and no other job of the fleet was given: PVE's nextid gives every
// concurrent caller the same id.
func (v *vpsJob) reserveVMID(ctx context.Context, from int) (int, error) {
	next, err := v.w.Proxmox.NextID(ctx)
	if err != nil {
		return 0, err
	}
	from = max(next, from)
	for {
		id, err := v.w.Queries.TakeVMID(ctx, int32(from))
		if err != nil {
			return 0, fmt.Errorf("take a VMID: %w", err)
		}
		// A VMID some service references (registered, or made before the
		// counter) is never handed out again.
		if mine, err := v.reserved(ctx, int(id)); err != nil || mine {
			return int(id), err
		}
		from = int(id) + 1
	}
}

// pickNode returns the online node of the service's location, among those
// usable says yes to, with the most free memory.
func (v *vpsJob) pickNode(ctx context.Context, usable func(node string) bool) (string, error) {
	nodes, err := v.w.Proxmox.Nodes(ctx)
	if err != nil {
		return "", err
	}
	allowed := v.w.Locations[v.svc.Location]
	var best *proxmox.NodeLoad
	for i, n := range nodes {
		if !n.Online || !usable(n.Node) || (len(allowed) > 0 && !slices.Contains(allowed, n.Node)) {
			continue
		}
		if best == nil || n.MaxMem-n.Mem > best.MaxMem-best.Mem {
			best = &nodes[i]
		}
	}
	if best == nil {
		return "", &failure.Error{Class: failure.Transient, Provider: proxmox.Provider, Op: "place",
			Message: fmt.Sprintf("no online Proxmox node with the template for location %q", v.svc.Location)}
	}
	return best.Node, nil
}

// clone makes the VM as a full clone of the template unless it exists. The
// clone's task is found again after a lost answer (it is on the template's
// task list, started by us after the intent), and a clone of ours that is
// still running (its description comes only when it ends, but the task is
// ours) is waited on rather than taken for someone else's VM.
func (v *vpsJob) clone(ctx context.Context, name string) error {
	ref, err := v.vm()
	if err != nil {
		return err
	}
	var template proxmox.VMRef
	if ok, err := v.run.Get("template", &template); err != nil || !ok {
		return cmpErr(err, permanent("clone", "the job has no template"))
	}
	if name == "" {
		name = "vps-" + v.svc.ID.String()[:8]
	}
	return v.tasks.do(ctx, pveOp{Key: "clone", VM: template, Foreign: true, NoAdopt: true,
		Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
			cfg, err := v.w.Proxmox.Config(ctx, ref)
			if err == nil && !ownedBy(cfg, v.svc.ID) && cfg.Lock == "clone" {
				// PVE writes the target's configuration, locked, before the
				// clone's task starts, and its description only when it
				// ends: at a VMID reserved for the service, this is the
				// clone an earlier attempt started. Wait for its end.
				if mine, rerr := v.reserved(ctx, ref.VMID); rerr != nil || !mine {
					return "", nil, cmpErr(rerr, v.replace(ctx, ref))
				}
				v.log.Info("waiting on the clone an earlier attempt started", "vmid", ref.VMID)
				if err := v.waitUnlocked(ctx, ref, template); err != nil {
					return "", nil, err
				}
				cfg, err = v.w.Proxmox.Config(ctx, ref)
			}
			switch {
			case err == nil && ownedBy(cfg, v.svc.ID):
				return "", nil, v.waitUnlocked(ctx, ref, template)
			case err == nil:
				// Someone else's VM has the VMID.
				return "", nil, v.replace(ctx, ref)
			case !errors.Is(err, proxmox.ErrNotFound):
				return "", nil, err
			}
			return "qmclone", func(ctx context.Context) (string, error) {
				upid, err := v.w.Proxmox.Clone(ctx, template, proxmox.CloneOptions{
					NewID: ref.VMID, Name: name, Target: ref.Node, Storage: v.w.Storage, Description: vmDescription(v.svc.ID),
				})
				if err != nil && strings.Contains(failure.UserMessage(err), "already exists") {
					return "", v.replace(ctx, ref)
				}
				return upid, err
			}, nil
		},
		Check: func(ctx context.Context) error {
			cfg, err := v.w.Proxmox.Config(ctx, ref)
			if err != nil {
				return err
			}
			if !ownedBy(cfg, v.svc.ID) {
				return v.replace(ctx, ref)
			}
			if cfg.Lock != "" {
				return lockedErr("clone", cfg.Lock)
			}
			return nil
		},
	})
}

// reserved reports whether vmid is reserved for the service (reserving it
// when nobody holds it).
func (v *vpsJob) reserved(ctx context.Context, vmid int) (bool, error) {
	n, err := v.w.Queries.ReserveVMID(ctx, queries.ReserveVMIDParams{Vmid: int32(vmid), ServiceID: v.svc.ID})
	if err != nil {
		return false, fmt.Errorf("reserve VMID %d: %w", vmid, err)
	}
	return n == 1, nil
}

// replace picks another VMID after the chosen one was taken. A VM that
// must keep its VMID (a reinstall) cannot.
func (v *vpsJob) replace(ctx context.Context, taken proxmox.VMRef) error {
	if v.ref != nil {
		return needsRepair("clone", fmt.Sprintf("VMID %d was taken by another VM while the service's VM was being re-imaged; a repair moves the service to a new VMID", taken.VMID))
	}
	id, err := v.reserveVMID(ctx, taken.VMID+1)
	if err != nil {
		return err
	}
	v.log.Warn("VMID taken by another VM; choosing another", "vmid", taken.VMID, "new_vmid", id)
	if err := v.run.Set(ctx, "vm", proxmox.VMRef{Node: taken.Node, VMID: id}); err != nil {
		return err
	}
	return &failure.Error{Class: failure.Transient, Provider: proxmox.Provider, Op: "clone",
		Message: fmt.Sprintf("VMID %d was taken; retrying with %d", taken.VMID, id)}
}

// waitUnlocked waits until Proxmox releases the VM's lock. A lock is held
// by a running task: on the VM, or for a clone's lock on the template the
// clone is made from. A lock with no task left to release it (a task that
// died with its node, a failed restore's "create") never goes by itself:
// waiting ends with an error that says how to clear it.
func (v *vpsJob) waitUnlocked(ctx context.Context, ref, template proxmox.VMRef) error {
	return poll(ctx, v.w.Proxmox.PollInterval(), func(ctx context.Context) (bool, error) {
		cfg, err := v.w.Proxmox.Config(ctx, ref)
		if err != nil || cfg.Lock == "" {
			return true, err
		}
		holder := ref
		if cfg.Lock == "clone" {
			holder = template
		}
		busy, err := v.w.Proxmox.Busy(ctx, holder)
		if err != nil || busy {
			return false, err
		}
		// Read again: the task may have ended between the two reads.
		if cfg, err = v.w.Proxmox.Config(ctx, ref); err != nil || cfg.Lock == "" {
			return true, err
		}
		return false, permanent("unlock", fmt.Sprintf("VM %d on %s is locked (%s) and no task is running to release it; "+
			"an operator must check it and unlock it (qm unlock %d) before the service can be repaired", ref.VMID, ref.Node, cfg.Lock, ref.VMID))
	})
}

// installConfig is the configuration a new or reinstalled VM gets: the
// plan's CPU and memory, the service tag and cloud-init.
func installConfig(service uuid.UUID, plan Plan, in Install, secrets InstallSecrets) map[string]any {
	values := map[string]any{
		"cores": plan.Cores, "memory": plan.MemoryMB,
		"tags":      "provisiond;" + VMTag(service),
		"ciuser":    cmp.Or(in.User, "root"),
		"ipconfig0": "ip=dhcp",
	}
	if in.Hostname != "" {
		values["name"] = in.Hostname
	}
	if len(in.SSHKeys) > 0 {
		// PVE wants the keys strictly URL-encoded: spaces as %20, not +.
		values["sshkeys"] = strings.ReplaceAll(url.QueryEscape(strings.Join(in.SSHKeys, "\n")), "+", "%20")
	}
	if secrets.Password != "" {
		values["cipassword"] = secrets.Password
	}
	return values
}

// configure applies configuration values to the VM as one task.
func (v *vpsJob) configure(ctx context.Context, values map[string]any) error {
	ref, err := v.vm()
	if err != nil {
		return err
	}
	return v.tasks.do(ctx, pveOp{Key: "config", VM: ref,
		Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
			return "qmconfig", func(ctx context.Context) (string, error) { return v.w.Proxmox.Configure(ctx, ref, values) }, nil
		},
		Check: func(ctx context.Context) error { return v.checkConfig(ctx, ref, values) },
	})
}

// checkConfig reads the VM's configuration (pending changes included, as
// they apply at the next start) and returns an error naming the first key
// that is not as values set it. Secrets cannot be read back, and PVE
// re-encodes SSH keys, so those are left out.
func (v *vpsJob) checkConfig(ctx context.Context, ref proxmox.VMRef, values map[string]any) error {
	cfg, err := v.w.Proxmox.Config(ctx, ref)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(values)) {
		want := fmt.Sprint(values[k])
		switch k {
		case "cipassword", "sshkeys":
		case "delete":
			for _, d := range strings.Split(want, ",") {
				if _, ok := cfg.Raw[d]; ok {
					return configDrift(ref, d, "still set")
				}
			}
		case "tags":
			// We write tags separated by ';', as PVE lists them.
			if !slices.Equal(slices.Sorted(slices.Values(cfg.Tags)), slices.Sorted(slices.Values(strings.Split(want, ";")))) {
				return configDrift(ref, k, fmt.Sprintf("is %q, want %q", cfg.Raw[k], want))
			}
		default:
			if !optionsMatch(cfg.Raw[k], want) {
				return configDrift(ref, k, fmt.Sprintf("is %q, want %q", cfg.Raw[k], want))
			}
		}
	}
	return nil
}

// optionsMatch reports whether a configuration value as PVE shows it holds
// what was set: each comma-separated part of want is among got's. PVE adds
// parts of its own (an ISO's size=, a NIC's firewall default) and writes
// MAC addresses in upper case, so neither extra parts nor case count.
func optionsMatch(got, want string) bool {
	have := strings.Split(strings.ToLower(got), ",")
	for _, part := range strings.Split(strings.ToLower(want), ",") {
		if !slices.Contains(have, part) {
			return false
		}
	}
	return true
}

func configDrift(ref proxmox.VMRef, key, what string) error {
	return notSeen("config", fmt.Sprintf("after the configuration task, %s of VM %d on %s %s", key, ref.VMID, ref.Node, what))
}

// growDisk grows the VM's first disk to the plan's size; Proxmox cannot
// shrink one.
func (v *vpsJob) growDisk(ctx context.Context, sizeGB int) error {
	ref, err := v.vm()
	if err != nil {
		return err
	}
	return v.tasks.do(ctx, pveOp{Key: "resize", VM: ref, Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
		cfg, err := v.w.Proxmox.Config(ctx, ref)
		if err != nil {
			return "", nil, err
		}
		disk := bootDisk(cfg)
		if disk == "" {
			return "", nil, permanent("resize", "the VM has no disk")
		}
		if cfg.Disks[disk] >= sizeGB {
			return "", nil, nil
		}
		return "resize", func(ctx context.Context) (string, error) { return v.w.Proxmox.Resize(ctx, ref, disk, sizeGB) }, nil
	}, Check: func(ctx context.Context) error {
		cfg, err := v.w.Proxmox.Config(ctx, ref)
		if err != nil {
			return err
		}
		if got := cfg.Disks[bootDisk(cfg)]; got < sizeGB {
			return notSeen("resize", fmt.Sprintf("after the resize, the disk of VM %d is %d GB, want %d GB", ref.VMID, got, sizeGB))
		}
		return nil
	}})
}

// bootDisk names the VM's first disk: scsi0, virtio0, sata0 or ide0.
func bootDisk(cfg proxmox.VMConfig) string {
	for _, k := range []string{"scsi0", "virtio0", "sata0", "ide0"} {
		if _, ok := cfg.Disks[k]; ok {
			return k
		}
	}
	return ""
}

func (v *vpsJob) power() (*pvePower, error) {
	ref, err := v.vm()
	if err != nil {
		return nil, err
	}
	return &pvePower{c: v.w.Proxmox, tasks: v.tasks, ref: ref, run: v.run, log: v.log, shutdownTimeout: v.w.ShutdownTimeout}, nil
}

func (v *vpsJob) start(ctx context.Context) error {
	// A suspended service's VM stays off until the suspension ends, however
	// the job came to run on it (a resize accepted as the suspension ended);
	// the service's suspensions are read afresh.
	if svc, err := v.w.Queries.GetService(ctx, v.svc.ID); err != nil {
		return fmt.Errorf("load service %s: %w", v.svc.ID, err)
	} else if len(svc.Suspensions) > 0 {
		return v.run.Log(ctx, "the service is suspended ("+strings.Join(svc.Suspensions, ", ")+"): its VM stays off until it is resumed")
	}
	p, err := v.power()
	if err != nil {
		return err
	}
	return p.ensure(proxmox.OpStart)(ctx)
}

// waitAgent waits until the guest agent answers, when the VM's
// configuration enables it, so that the job ends once the guest has booted.
// A guest that never starts its agent (its image has none) ends the wait
// after AgentTimeout: the VM runs, and the job's log says the agent did not
// answer.
func (v *vpsJob) waitAgent(ctx context.Context) error {
	ref, err := v.vm()
	if err != nil {
		return err
	}
	cfg, err := v.w.Proxmox.Config(ctx, ref)
	if err != nil || !cfg.AgentEnabled() {
		return err
	}
	if st, err := v.w.Proxmox.State(ctx, ref); err != nil || st.Stopped() {
		return err // left off (a suspended service's): no guest to wait for
	}
	timeout := cmp.Or(v.w.AgentTimeout, 3*time.Minute)
	deadline := time.Now().Add(timeout)
	return poll(ctx, v.w.Proxmox.PollInterval(), func(ctx context.Context) (bool, error) {
		ready, err := v.w.Proxmox.AgentPing(ctx, ref)
		switch {
		case err != nil:
			return false, err
		case ready:
			return true, v.run.Log(ctx, "the guest agent answered")
		case time.Now().After(deadline):
			return true, v.run.Log(ctx, fmt.Sprintf("the guest agent did not answer within %s; the VM runs", timeout))
		}
		return false, nil
	})
}

// cmpErr returns err when there is one, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// stopped adds the VM's condition to an error that stopped the job early
// (a cancellation or a shutdown), so that the job records where it left the
// VM. Other errors pass through.
//
// A job cancelled before its point of no return after it powered a running
// VM off (powerOff) starts it again: the service is as it was before.
func (v *vpsJob) stopped(ctx context.Context, err error) error {
	if err == nil || (!errors.Is(err, ErrCancelled) && ctx.Err() == nil) {
		return err
	}
	ref, verr := v.vm()
	if verr != nil {
		return &StoppedError{Err: err, Condition: "no VM was made"}
	}
	look, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, serr := v.w.Proxmox.State(look, ref)
	switch {
	case errors.Is(serr, proxmox.ErrNotFound):
		return &StoppedError{Err: err, Condition: fmt.Sprintf("VM %d on %s does not exist", ref.VMID, ref.Node)}
	case serr != nil:
		return &StoppedError{Err: err, Condition: fmt.Sprintf("VM %d on %s, state unknown", ref.VMID, ref.Node)}
	}
	cond := fmt.Sprintf("VM %d on %s is %s", ref.VMID, ref.Node, st.PowerState())
	if st.Lock != "" {
		cond += ", locked (" + st.Lock + ")"
	}
	// Only a cancellation met between steps, on a live context: one that
	// cut an attempt short is delivered again at once by asynq, and that
	// attempt meets it between steps.
	var wasRunning bool
	if _, gerr := v.run.Get("wasRunning", &wasRunning); gerr == nil && wasRunning && st.Stopped() && !v.run.Committed() &&
		errors.Is(err, ErrCancelled) && ctx.Err() == nil {
		if rerr := v.start(ctx); rerr != nil {
			cond += "; starting it again failed: " + failure.UserMessage(rerr)
		} else {
			cond = fmt.Sprintf("VM %d on %s is running again, as before the job", ref.VMID, ref.Node)
		}
	}
	return &StoppedError{Err: err, Condition: cond}
}

// powerOff returns a step that powers the VM off (a shutdown first, when
// graceful), remembering whether it ran, so that a job cancelled before
// its point of no return starts it again (see stopped).
func (v *vpsJob) powerOff(graceful bool) func(context.Context) error {
	return func(ctx context.Context) error {
		p, err := v.power()
		if err != nil {
			return err
		}
		if ok, err := v.run.Get("wasRunning", new(bool)); err != nil {
			return err
		} else if !ok {
			st, err := p.c.State(ctx, p.ref)
			if err != nil {
				return err
			}
			if err := v.run.Set(ctx, "wasRunning", !st.Stopped()); err != nil {
				return err
			}
		}
		if graceful {
			return p.shutdown(ctx)
		}
		return p.ensure(proxmox.OpStop)(ctx)
	}
}
