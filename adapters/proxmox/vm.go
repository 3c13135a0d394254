package proxmox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// ErrNotFound is wrapped by the error of a call about a VM, volume or task
// that Proxmox does not have.
var ErrNotFound = fmt.Errorf("%w on Proxmox", failure.ErrNotFound)

// NodeLoad is how busy a node is, for placing a new VM.
type NodeLoad struct {
	Node   string
	Online bool
	CPU    float64 // share of the node's CPUs in use, 0 to 1
	Mem    uint64  // bytes in use
	MaxMem uint64
}

// Nodes lists the cluster's nodes with their load.
func (c *Client) Nodes(ctx context.Context) ([]NodeLoad, error) {
	var ns pve.NodeStatuses
	if err := c.call(ctx, "nodes", func(ctx context.Context) error { return c.api.Get(ctx, "/nodes", &ns) }); err != nil {
		return nil, err
	}
	out := make([]NodeLoad, 0, len(ns))
	for _, n := range ns {
		out = append(out, NodeLoad{Node: n.Node, Online: n.Status == "online", CPU: n.CPU, Mem: n.Mem, MaxMem: n.MaxMem})
	}
	return out, nil
}

// NextID asks the cluster for a free VMID. Two callers may be told the same
// one; the clone of the second then fails and is retried with a new id.
func (c *Client) NextID(ctx context.Context) (int, error) {
	var id pve.StringOrInt
	if err := c.call(ctx, "nextid", func(ctx context.Context) error { return c.api.Get(ctx, "/cluster/nextid", &id) }); err != nil {
		return 0, err
	}
	return int(id), nil
}

// Inventory is every VM and template of the cluster, from one call.
type Inventory []pve.ClusterResource

// Inventory lists the cluster's VMs and templates.
func (c *Client) Inventory(ctx context.Context) (Inventory, error) {
	var rs pve.ClusterResources
	err := c.call(ctx, "cluster.resources", func(ctx context.Context) error {
		return c.api.Get(ctx, "/cluster/resources?type=vm", &rs)
	})
	inv := make(Inventory, 0, len(rs))
	for _, r := range rs {
		if r != nil && r.Type == "qemu" {
			inv = append(inv, *r)
		}
	}
	return inv, err
}

// ByTag finds the VM carrying tag.
func (inv Inventory) ByTag(tag string) (VMRef, bool) {
	for _, r := range inv {
		if r.Template != 1 && slices.Contains(splitTags(r.Tags), tag) {
			return VMRef{Node: r.Node, VMID: int(r.VMID)}, true
		}
	}
	return VMRef{}, false
}

// TaggedVM is a VM with the first of its tags that has a given prefix.
type TaggedVM struct {
	VMRef
	Tag string
}

// Tagged lists the VMs (not templates) carrying a tag with the prefix.
func (inv Inventory) Tagged(prefix string) []TaggedVM {
	var out []TaggedVM
	for _, r := range inv {
		if r.Template == 1 {
			continue
		}
		for _, t := range splitTags(r.Tags) {
			if strings.HasPrefix(t, prefix) {
				out = append(out, TaggedVM{VMRef: VMRef{Node: r.Node, VMID: int(r.VMID)}, Tag: t})
				break
			}
		}
	}
	return out
}

// ByVMID finds the VM (not a template) with the VMID, on whatever node.
func (inv Inventory) ByVMID(vmid int) (VMRef, bool) {
	for _, r := range inv {
		if r.Template != 1 && int(r.VMID) == vmid {
			return VMRef{Node: r.Node, VMID: vmid}, true
		}
	}
	return VMRef{}, false
}

// Templates lists the templates, ordered by VMID.
func (inv Inventory) Templates() []Template {
	var out []Template
	for _, r := range inv {
		if r.Template == 1 {
			out = append(out, Template{VMRef: VMRef{Node: r.Node, VMID: int(r.VMID)}, Name: r.Name})
		}
	}
	slices.SortFunc(out, func(a, b Template) int { return a.VMID - b.VMID })
	return out
}

// VMByTag finds the VM carrying tag anywhere in the cluster.
func (c *Client) VMByTag(ctx context.Context, tag string) (VMRef, bool, error) {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return VMRef{}, false, err
	}
	ref, ok := inv.ByTag(tag)
	return ref, ok, nil
}

// splitTags reads PVE's tag list, which it separates with ';' (and accepts
// ',' and spaces on input).
func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}

// CloneOptions shape a full clone.
type CloneOptions struct {
	// NewID is the VMID of the clone; required, so that a retry asks for
	// the same one.
	NewID int
	Name  string
	// Target is the node the clone lands on; empty means the template's.
	Target string
	// Storage for the clone's disks; empty means the template's.
	Storage     string
	Description string
}

// Clone starts a full clone of the template and returns the task's UPID.
func (c *Client) Clone(ctx context.Context, template VMRef, opts CloneOptions) (string, error) {
	if opts.NewID <= 0 {
		return "", permanentf("clone", "clone needs a VMID")
	}
	body := &pve.VirtualMachineCloneOptions{
		NewID: opts.NewID, Name: opts.Name, Target: opts.Target, Storage: opts.Storage,
		Description: opts.Description, Full: true,
	}
	return c.task(ctx, "clone", http.MethodPost, vmPath(template, "clone"), body)
}

// VMConfig is the part of a VM's configuration the jobs read.
type VMConfig struct {
	Name     string
	Cores    int
	Sockets  int
	MemoryMB int
	Tags     []string
	Boot     string
	IDE2     string
	Lock     string
	Digest   string
	// Disks maps a disk key (scsi0, virtio0, ...) to its size in GiB.
	Disks map[string]int
	// Raw holds every key as Proxmox returned it.
	Raw map[string]string
}

// diskKeyRE matches the configuration keys that hold disks.
var diskKeyRE = regexp.MustCompile(`^(scsi|virtio|sata|ide)\d+$`)

// Config reads the VM's configuration.
func (c *Client) Config(ctx context.Context, ref VMRef) (VMConfig, error) {
	var raw map[string]any
	err := c.call(ctx, "config.get", func(ctx context.Context) error { return c.api.Get(ctx, vmPath(ref, "config"), &raw) })
	if err != nil {
		return VMConfig{}, err
	}
	cfg := VMConfig{Raw: map[string]string{}, Disks: map[string]int{}}
	for k, v := range raw {
		cfg.Raw[k] = fmt.Sprint(v)
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(cfg.Raw[k]); return n }
	cfg.Name, cfg.Cores, cfg.Sockets, cfg.MemoryMB = cfg.Raw["name"], atoi("cores"), atoi("sockets"), atoi("memory")
	cfg.Tags, cfg.Boot, cfg.IDE2, cfg.Lock, cfg.Digest = splitTags(cfg.Raw["tags"]), cfg.Raw["boot"], cfg.Raw["ide2"], cfg.Raw["lock"], cfg.Raw["digest"]
	for k, v := range cfg.Raw {
		if diskKeyRE.MatchString(k) && !strings.Contains(v, "media=cdrom") {
			cfg.Disks[k] = diskSizeGB(v)
		}
	}
	return cfg, nil
}

// diskSizeGB reads "size=" from a disk's option string
// ("local-lvm:vm-100-disk-0,size=20G"): a number with a unit of K, M, G or
// T, or bytes without one, as PVE writes it.
func diskSizeGB(opts string) int {
	for _, part := range strings.Split(opts, ",") {
		v, ok := strings.CutPrefix(part, "size=")
		if !ok || v == "" {
			continue
		}
		perGiB := map[byte]float64{'K': 1 << 20, 'M': 1 << 10, 'G': 1, 'T': 1.0 / (1 << 10)}
		unit := v[len(v)-1]
		div, ok := perGiB[unit]
		if ok {
			v = v[:len(v)-1]
		} else {
			div = 1 << 30
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0
		}
		return int(n / div)
	}
	return 0
}

// Configure changes configuration keys as a task (POST .../config) and
// returns its UPID. Values may hold secrets (cipassword): they go to
// Proxmox only, never into errors or logs.
func (c *Client) Configure(ctx context.Context, ref VMRef, values map[string]any) (string, error) {
	return c.task(ctx, "config.set", http.MethodPost, vmPath(ref, "config"), values)
}

// SetConfig changes configuration keys at once (PUT .../config, which PVE
// carries out without a task). With digest set, PVE refuses the change when
// the configuration changed since it was read.
func (c *Client) SetConfig(ctx context.Context, ref VMRef, values map[string]any, digest string) error {
	body := maps.Clone(values)
	if digest != "" {
		body["digest"] = digest
	}
	return c.call(ctx, "config.put", func(ctx context.Context) error { return c.api.Put(ctx, vmPath(ref, "config"), body, nil) })
}

// Resize grows a disk to sizeGB; Proxmox refuses to shrink.
func (c *Client) Resize(ctx context.Context, ref VMRef, disk string, sizeGB int) (string, error) {
	return c.task(ctx, "resize", http.MethodPut, vmPath(ref, "resize"), map[string]string{
		"disk": disk, "size": strconv.Itoa(sizeGB) + "G",
	})
}

// Destroy removes the VM, its disks and (purge) its backup jobs and
// replication entries.
func (c *Client) Destroy(ctx context.Context, ref VMRef) (string, error) {
	return c.task(ctx, "destroy", http.MethodDelete,
		fmt.Sprintf("/nodes/%s/qemu/%d?purge=1&destroy-unreferenced-disks=1", url.PathEscape(ref.Node), ref.VMID), nil)
}

// BackupOptions shape a vzdump run of one VM.
type BackupOptions struct {
	Storage string
	// Mode is snapshot, suspend or stop.
	Mode string
	// Notes is the notes template stored with the archive.
	Notes string
}

// Backup starts vzdump for the VM and returns its UPID.
func (c *Client) Backup(ctx context.Context, ref VMRef, opts BackupOptions) (string, error) {
	mode := opts.Mode
	if mode == "" {
		mode = "snapshot"
	}
	return c.task(ctx, "vzdump", http.MethodPost, fmt.Sprintf("/nodes/%s/vzdump", url.PathEscape(ref.Node)), map[string]any{
		"vmid": strconv.Itoa(ref.VMID), "storage": opts.Storage, "mode": mode, "compress": "zstd",
		"notes-template": opts.Notes,
	})
}

// Volume is a backup archive on a storage.
type Volume struct {
	VolID string `json:"volid"`
	VMID  int    `json:"vmid"`
	Size  uint64 `json:"size"`
	CTime int64  `json:"ctime"`
	Notes string `json:"notes"`
	// Format is the archive's format, e.g. vma.zst.
	Format string `json:"format"`
}

// Backups lists the VM's backup archives on a storage, oldest first.
func (c *Client) Backups(ctx context.Context, ref VMRef, storage string) ([]Volume, error) {
	var vols []Volume
	p := fmt.Sprintf("/nodes/%s/storage/%s/content?content=backup&vmid=%d", url.PathEscape(ref.Node), url.PathEscape(storage), ref.VMID)
	if err := c.call(ctx, "storage.content", func(ctx context.Context) error { return c.api.Get(ctx, p, &vols) }); err != nil {
		return nil, err
	}
	slices.SortFunc(vols, func(a, b Volume) int { return int(a.CTime - b.CTime) })
	return vols, nil
}

// DeleteVolume removes a backup archive. PVE 8 answers with a UPID, older
// versions with null; the UPID is "" then.
func (c *Client) DeleteVolume(ctx context.Context, node, volid string) (string, error) {
	storage, _, ok := strings.Cut(volid, ":")
	if !ok {
		return "", permanentf("storage.delete", fmt.Sprintf("malformed volume id %q", volid))
	}
	var upid *string
	p := fmt.Sprintf("/nodes/%s/storage/%s/content/%s", url.PathEscape(node), url.PathEscape(storage), url.PathEscape(volid))
	if err := c.call(ctx, "storage.delete", func(ctx context.Context) error { return c.api.Delete(ctx, p, &upid) }); err != nil {
		return "", err
	}
	if upid == nil {
		return "", nil
	}
	return c.checkUPID("storage.delete", *upid)
}

// Restore starts restoring an archive over the VM (force=1); the VM must
// be stopped.
func (c *Client) Restore(ctx context.Context, ref VMRef, volid, storage string) (string, error) {
	body := map[string]any{"vmid": ref.VMID, "archive": volid, "force": 1}
	if storage != "" {
		body["storage"] = storage
	}
	return c.task(ctx, "restore", http.MethodPost, fmt.Sprintf("/nodes/%s/qemu", url.PathEscape(ref.Node)), body)
}

// RRDPoint is one sample of a VM's usage.
type RRDPoint = pve.RRDData

// RRD returns the VM's usage over a timeframe: hour, day, week, month or year.
func (c *Client) RRD(ctx context.Context, ref VMRef, timeframe string) ([]*RRDPoint, error) {
	var out []*RRDPoint
	p := vmPath(ref, "rrddata") + "?timeframe=" + url.QueryEscape(timeframe) + "&cf=AVERAGE"
	if err := c.call(ctx, "rrddata", func(ctx context.Context) error { return c.api.Get(ctx, p, &out) }); err != nil {
		return nil, err
	}
	return out, nil
}

// Usage is a VM's current status with its usage figures.
type Usage struct {
	State
	CPU      float64 // share of its cores, 0 to 1
	Cores    int
	Mem      uint64
	MaxMem   uint64
	Disk     uint64
	MaxDisk  uint64
	NetIn    uint64
	NetOut   uint64
	DiskRead uint64
}

// Usage reads the VM's status with its usage figures.
func (c *Client) Usage(ctx context.Context, ref VMRef) (Usage, error) {
	var vm pve.VirtualMachine
	err := c.call(ctx, "status.current", func(ctx context.Context) error { return c.api.Get(ctx, vmPath(ref, "status/current"), &vm) })
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		State: State{Status: vm.Status, QMPStatus: vm.QMPStatus, Lock: vm.Lock, Uptime: vm.Uptime},
		CPU:   vm.CPU, Cores: vm.CPUs, Mem: vm.Mem, MaxMem: vm.MaxMem, Disk: vm.Disk, MaxDisk: vm.MaxDisk,
		NetIn: vm.NetIn, NetOut: vm.Netout, DiskRead: vm.DiskRead,
	}, nil
}

// AgentPing asks the VM's QEMU guest agent whether it runs. An agent that
// does not answer yet (the guest is booting, or has none installed) is
// false without an error: it is an answer, not a failure of Proxmox.
func (c *Client) AgentPing(ctx context.Context, ref VMRef) (bool, error) {
	ready := false
	err := c.call(ctx, "agent.ping", func(ctx context.Context) error {
		err := c.api.Post(ctx, vmPath(ref, "agent/ping"), map[string]any{}, nil)
		var he *httpError
		if errors.As(err, &he) && strings.Contains(he.Reason, "guest agent is not running") {
			return nil
		}
		ready = err == nil
		return err
	})
	return ready, err
}

// AgentEnabled reports whether the configuration enables the QEMU guest
// agent ("1", "1,…" or "enabled=1,…").
func (cfg VMConfig) AgentEnabled() bool {
	for _, part := range strings.Split(cfg.Raw["agent"], ",") {
		if part == "1" || part == "enabled=1" {
			return true
		}
	}
	return false
}

// NodeUsage reads the status and usage of every VM on a node from one
// call, keyed by VMID, so collecting a whole node costs one request.
func (c *Client) NodeUsage(ctx context.Context, node string) (map[int]Usage, error) {
	var vms pve.VirtualMachines
	p := fmt.Sprintf("/nodes/%s/qemu", url.PathEscape(node))
	if err := c.call(ctx, "qemu.list", func(ctx context.Context) error { return c.api.Get(ctx, p, &vms) }); err != nil {
		return nil, err
	}
	out := make(map[int]Usage, len(vms))
	for _, vm := range vms {
		if vm == nil || vm.Template {
			continue
		}
		out[int(vm.VMID)] = Usage{
			State: State{Status: vm.Status, QMPStatus: vm.QMPStatus, Lock: vm.Lock, Uptime: vm.Uptime},
			CPU:   vm.CPU, Cores: vm.CPUs, Mem: vm.Mem, MaxMem: vm.MaxMem, Disk: vm.Disk, MaxDisk: vm.MaxDisk,
			NetIn: vm.NetIn, NetOut: vm.Netout, DiskRead: vm.DiskRead,
		}
	}
	return out, nil
}

// task sends a request that starts a Proxmox task and returns its UPID.
func (c *Client) task(ctx context.Context, op, method, path string, body any) (string, error) {
	var upid string
	err := c.call(ctx, op, func(ctx context.Context) error {
		switch method {
		case http.MethodPost:
			return c.api.Post(ctx, path, body, &upid)
		case http.MethodPut:
			return c.api.Put(ctx, path, body, &upid)
		default:
			return c.api.Delete(ctx, path, &upid)
		}
	})
	if err != nil {
		return "", err
	}
	return c.checkUPID(op, upid)
}

func (c *Client) checkUPID(op, upid string) (string, error) {
	if !upidRE.MatchString(upid) {
		return "", &failure.Error{Class: failure.Transient, Provider: Provider, Op: op,
			Message: fmt.Sprintf("unexpected task id %q", upid)}
	}
	return upid, nil
}

func vmPath(ref VMRef, rest string) string {
	return fmt.Sprintf("/nodes/%s/qemu/%d/%s", url.PathEscape(ref.Node), ref.VMID, rest)
}

func permanentf(op, msg string) error {
	return &failure.Error{Class: failure.Permanent, Provider: Provider, Op: op, Message: msg}
}

// Template is a VM template new VMs are cloned from.
type Template struct {
	VMRef
	Name string
}

// Templates lists the cluster's VM templates, ordered by VMID.
func (c *Client) Templates(ctx context.Context) ([]Template, error) {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	return inv.Templates(), nil
}
