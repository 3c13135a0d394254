package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// SnapshotVersion is the version of the snapshot format that Save writes
// and the only one Load reads.
const SnapshotVersion = 1

// Snapshot is the simulator's state as Save writes it and Load reads it:
// what a client can observe through the API, not how a run got there.
// Running tasks, faults, the call log, VNC sessions and tickets are not
// part of it.
type Snapshot struct {
	// Version is SnapshotVersion.
	Version int `json:"version"`
	// SavedAt is when Save ran; Load uses it to mark the time the
	// simulator was down in the VMs' power history.
	SavedAt time.Time `json:"savedAt"`
	// VMs are the VMs and templates, ordered by VMID.
	VMs []VMSnapshot `json:"vms"`
	// Storages are the nodes' storages with their volumes (ISOs and
	// backups); disks are the VMs'.
	Storages []StorageSnapshot `json:"storages"`
	// MACs counts the MAC addresses handed out so far; it numbers the next
	// one a clone, a restore with unique or a new NIC gets.
	MACs int `json:"macs"`
	// PID is the process id of the last task started; the next task's
	// UPID follows it.
	PID uint32 `json:"pid"`
}

// VMSnapshot is one VM: the public VM (its DiskGB is informational, Load
// reads DiskBytes) and the state the API shows that VM does not hold.
type VMSnapshot struct {
	VM
	// DiskBytes is scsi0's exact size, as resize left it.
	DiskBytes int64 `json:"diskBytes"`
	// Disk is scsi0's volume id without its size, such as
	// "local-lvm:vm-100-disk-0" or, for a linked clone,
	// "local-lvm:base-9000-disk-0/vm-200-disk-0".
	Disk string `json:"disk"`
	// Pending are the changes of a running VM that apply at its next
	// start.
	Pending map[string]string `json:"pending,omitempty"`
	// Usage is the load a test set with SetLoad.
	Usage *UsageSnapshot `json:"usage,omitempty"`
	// History is the power history RRD data is drawn from, oldest first.
	History []PowerChange `json:"history,omitempty"`
}

// UsageSnapshot is a Load (see SetLoad).
type UsageSnapshot struct {
	CPU    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
	Disk   float64 `json:"disk"`
}

// PowerChange is one entry of a VM's power history.
type PowerChange struct {
	At      time.Time `json:"at"`
	Running bool      `json:"running"`
}

// StorageSnapshot is one storage of one node.
type StorageSnapshot struct {
	Node    string           `json:"node"`
	ID      string           `json:"id"`
	Type    string           `json:"type"`
	Content string           `json:"content"`
	Path    string           `json:"path,omitempty"`
	Total   int64            `json:"total"`
	Volumes []VolumeSnapshot `json:"volumes,omitempty"`
}

// VolumeSnapshot is a file in a directory storage: an ISO or a backup.
type VolumeSnapshot struct {
	VolID     string `json:"volid"`
	Content   string `json:"content"`
	Format    string `json:"format"`
	Size      int64  `json:"size"`
	CTime     int64  `json:"ctime"`
	VMID      int    `json:"vmid,omitempty"`
	Notes     string `json:"notes,omitempty"`
	Protected bool   `json:"protected,omitempty"`
	// Backup is what restoring the backup brings back.
	Backup *BackupSnapshot `json:"backup,omitempty"`
}

// BackupSnapshot is the VM as a backup holds it.
type BackupSnapshot struct {
	VM
	DiskBytes int64  `json:"diskBytes"`
	Disk      string `json:"disk"`
}

// maxHistory bounds the power changes a snapshot keeps per VM; older ones
// are folded into the first.
const maxHistory = 512

// Save writes the simulator's state — VMs and templates with their
// configuration (pending changes included), disks, power state and tags,
// storage contents (backups with their notes, ctime and size, ISOs), the
// power history, and the counters that decide future ids (MAC addresses,
// task pids) — as JSON, in the format of Snapshot. The next free VMID
// needs no counter: /cluster/nextid picks the lowest id no VM has.
//
// Running tasks are not saved: a VM that a task held comes back in the
// state the task started from, as after a node reboot. So a clone target
// still being created (and a VM that a running create or restore is
// making) is left out, as PVE removes it after a failed clone; a VM locked
// "backup" by a running vzdump, "destroyed" by a running destroy or
// "create" by a running restore over it is saved without that lock. Locks
// no running task holds ("suspended" after hibernation, "create" left by
// a failed restore, a lock a test set) are kept. Configuration file locks
// belong to tasks and are never saved. Faults, the call log, VNC sessions
// and the Kit's state are not saved either, nor are the nodes' clocks
// (uptime and skew), which are the server's configuration like
// Config.Nodes: a loaded server keeps its own.
//
// Save may be called at any time, also after Close.
func (s *Server) Save(w io.Writer) error {
	snap := s.snapshotState()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(snap); err != nil {
		return fmt.Errorf("save proxmox simulator state: %w", err)
	}
	return nil
}

// taskHold is what a running task does to a VM that Save must undo.
type taskHold int

const (
	holdNone   taskHold = iota
	holdUnlock          // the task set the VM's lock: save it unlocked
	holdOmit            // the task is creating the VM: leave it out
)

// taskHolds finds the VMs whose state a running task changed when it
// started; the lock must be held. Power and config tasks change nothing
// until they end, so only the workers that set a config lock at their
// start count.
func (s *Server) taskHolds() map[vmKey]taskHold {
	holds := map[vmKey]taskHold{}
	for _, t := range s.tasks {
		if !t.end.IsZero() {
			continue
		}
		vmid, _ := strconv.Atoi(t.id)
		k := vmKey{t.node, vmid}
		st := s.vms[k]
		switch t.typ {
		case "vzdump":
			// One task backs up one VM (id is its VMID) or several (no
			// id). Only vzdump and clone take the file lock shared, and a
			// clone refuses a locked source: "backup" with a shared file
			// lock is this task's.
			for k, st := range s.vms {
				if k.node == t.node && (t.id == "" || k.vmid == vmid) && st.Lock == "backup" && st.flock == "shared" {
					holds[k] = holdUnlock
				}
			}
		case "qmdestroy":
			if st != nil && st.Lock == "destroyed" && st.flock == "exclusive" {
				holds[k] = holdUnlock
			}
		case "qmcreate", "qmrestore":
			if st == nil || st.Lock != "create" {
				continue
			}
			if st.flocks > 0 {
				// A restore over an existing VM: it still has its old
				// configuration.
				holds[k] = holdUnlock
			} else {
				holds[k] = holdOmit
			}
		}
	}
	return holds
}

// snapshotState copies the state out; it takes the lock.
func (s *Server) snapshotState() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &Snapshot{Version: SnapshotVersion, SavedAt: time.Now().UTC(), VMs: []VMSnapshot{}, Storages: []StorageSnapshot{},
		MACs: s.macs, PID: s.pid}
	holds := s.taskHolds()
	for _, k := range slices.SortedFunc(maps.Keys(s.vms), func(a, b vmKey) int { return a.vmid - b.vmid }) {
		st := s.vms[k]
		hold := holds[k]
		if st.temp || hold == holdOmit {
			continue
		}
		vs := VMSnapshot{VM: st.snapshot(), DiskBytes: st.diskBytes, Disk: st.disk, Pending: maps.Clone(st.pending)}
		vs.SeedBackups = 0
		if hold == holdUnlock {
			vs.Lock = ""
		}
		if l := st.load; l != nil {
			vs.Usage = &UsageSnapshot{CPU: l.CPU, Memory: l.Memory, Disk: l.Disk}
		}
		vs.History = saveHistory(st.history)
		snap.VMs = append(snap.VMs, vs)
	}
	for _, n := range s.cfg.Nodes {
		for _, st := range s.storages[n] {
			ss := StorageSnapshot{Node: n, ID: st.id, Type: st.typ, Content: st.content, Path: st.path, Total: st.total}
			for _, v := range st.volumes {
				vol := VolumeSnapshot{VolID: v.volid, Content: v.content, Format: v.format, Size: v.size, CTime: v.ctime,
					VMID: v.vmid, Notes: v.notes, Protected: v.protected}
				if b := v.backup; b != nil {
					vm := b.VM
					vm.Tags = slices.Clone(vm.Tags)
					vm.Config = maps.Clone(vm.Config)
					vol.Backup = &BackupSnapshot{VM: vm, DiskBytes: b.diskBytes, Disk: b.disk}
				}
				ss.Volumes = append(ss.Volumes, vol)
			}
			snap.Storages = append(snap.Storages, ss)
		}
	}
	return snap
}

// saveHistory copies a power history, keeping at most maxHistory changes:
// the state before the ones kept becomes the first, from the epoch on.
func saveHistory(h []stateChange) []PowerChange {
	if len(h) > maxHistory {
		before := h[len(h)-maxHistory-1]
		h = append([]stateChange{{at: time.Unix(0, 0), running: before.running}}, h[len(h)-maxHistory:]...)
	}
	out := make([]PowerChange, len(h))
	for i, c := range h {
		out[i] = PowerChange{At: c.at.UTC(), Running: c.running}
	}
	return out
}

// Load replaces the simulator's state — VMs, storages and counters — with
// one that Save wrote. It checks the whole snapshot first: a snapshot it
// refuses (not JSON, no version or another version than SnapshotVersion,
// a VM or storage on a node this server does not have, a VMID twice)
// leaves the state as it was.
//
// VMs come back as after a node reboot that kept them running: a running
// VM runs (paused if it was), counted as started at the load, with its
// pending changes still pending; the power history marks the time between
// the save and the load as stopped. Storages of a node that the snapshot
// does not list keep their defaults. Faults, the call log, the Kit and
// the nodes' clocks are left as they are.
//
// Load is meant to run before the server takes requests, but it is safe
// at any time: it takes the lock, and tasks still running (they belong to
// the state being replaced) end with "unexpected status" without their
// effects, and open VNC sessions are closed, as a node reboot would.
func (s *Server) Load(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("load proxmox simulator state: %w", err)
	}
	snap, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	now := time.Now()
	vms, err := s.loadVMs(snap, now)
	if err != nil {
		return err
	}
	storages, err := s.loadStorages(snap)
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tasks {
		if t.end.IsZero() {
			if t.timer != nil {
				t.timer.Stop()
			}
			// The hooks act on the state being replaced; a failed task has
			// none of its effects.
			s.finish(t, "unexpected status")
		}
	}
	for port, v := range s.vnc {
		v.close()
		delete(s.vnc, port)
	}
	s.vms = vms
	s.storages = storages
	s.macs = snap.MACs
	s.pid = max(s.pid, snap.PID)
	return nil
}

// decodeSnapshot reads and checks a snapshot's JSON and version.
func decodeSnapshot(data []byte) (*Snapshot, error) {
	var snap Snapshot
	if err := simkit.DecodeSnapshot(data, SnapshotVersion, &snap); err != nil {
		return nil, fmt.Errorf("load proxmox simulator state: %w", err)
	}
	if snap.MACs < 0 {
		return nil, fmt.Errorf("load proxmox simulator state: macs %d is negative", snap.MACs)
	}
	return &snap, nil
}

// checkNode refuses a node this server does not have.
func (s *Server) checkNode(what, node string) error {
	if slices.Contains(s.cfg.Nodes, node) {
		return nil
	}
	return fmt.Errorf("load proxmox simulator state: %s is on node %q, which this simulator does not have (it has %s)",
		what, node, strings.Join(s.cfg.Nodes, ", "))
}

// loadVMs builds the VMs of a snapshot; it reads only the configuration,
// so it needs no lock.
func (s *Server) loadVMs(snap *Snapshot, now time.Time) (map[vmKey]*vmState, error) {
	vms := map[vmKey]*vmState{}
	nodeOf := map[int]string{}
	for _, v := range snap.VMs {
		what := fmt.Sprintf("VM %d", v.VMID)
		if err := s.checkNode(what, v.Node); err != nil {
			return nil, err
		}
		if v.VMID < 100 || v.VMID > 999999999 {
			return nil, fmt.Errorf("load proxmox simulator state: VMID %d is out of range (100 to 999999999)", v.VMID)
		}
		if other, dup := nodeOf[v.VMID]; dup {
			return nil, fmt.Errorf("load proxmox simulator state: VM %d appears twice (on %s and %s)", v.VMID, other, v.Node)
		}
		nodeOf[v.VMID] = v.Node
		if v.Status != "running" && v.Status != "stopped" {
			return nil, fmt.Errorf("load proxmox simulator state: VM %d has status %q; want running or stopped", v.VMID, v.Status)
		}
		if v.DiskBytes < 0 {
			return nil, fmt.Errorf("load proxmox simulator state: VM %d has a negative disk size", v.VMID)
		}
		vm := v.VM
		vm.SeedBackups = 0
		vm.Tags = slices.Clone(vm.Tags)
		vm.Config = maps.Clone(vm.Config)
		if vm.Config == nil {
			vm.Config = map[string]string{}
		}
		vm.Cores, vm.Sockets, vm.MemoryMB = cmp0(vm.Cores, 1), cmp0(vm.Sockets, 1), cmp0(vm.MemoryMB, 512)
		if vm.Status != "running" {
			vm.Paused = false
		}
		st := &vmState{VM: vm, diskBytes: v.DiskBytes, disk: v.Disk, pending: maps.Clone(v.Pending)}
		if st.diskBytes == 0 && vm.DiskGB > 0 {
			st.diskBytes = int64(vm.DiskGB) * gib
		}
		if st.disk == "" {
			st.disk = fmt.Sprintf("local-lvm:vm-%d-disk-0", vm.VMID)
			if vm.Template {
				st.disk = fmt.Sprintf("local-lvm:base-%d-disk-0", vm.VMID)
			}
		}
		if len(st.pending) == 0 {
			st.pending = nil
		}
		if u := v.Usage; u != nil {
			st.load = &Load{CPU: u.CPU, Memory: u.Memory, Disk: u.Disk}
		}
		st.history = loadHistory(v.History, vm.Status == "running", snap.SavedAt, now)
		if vm.Status == "running" {
			st.started = now
		}
		vms[vmKey{vm.Node, vm.VMID}] = st
	}
	return vms, nil
}

// loadHistory rebuilds a power history. A VM that runs stopped when the
// simulator did (at the save) and started again now; one that does not
// run stays stopped.
func loadHistory(saved []PowerChange, running bool, savedAt, now time.Time) []stateChange {
	var h []stateChange
	for _, c := range saved {
		if len(h) > 0 && c.At.Before(h[len(h)-1].at) {
			continue // out of order: runningAt wants it oldest first
		}
		h = append(h, stateChange{at: c.At, running: c.Running})
	}
	if len(h) == 0 {
		return []stateChange{{at: time.Unix(0, 0), running: running}}
	}
	last := h[len(h)-1]
	if last.at.After(now) {
		return h
	}
	if running && last.running && savedAt.After(last.at) && savedAt.Before(now) {
		h = append(h, stateChange{at: savedAt, running: false})
	}
	if running || last.running {
		h = append(h, stateChange{at: now, running: running})
	}
	return h
}

// loadStorages builds the nodes' storages: the defaults, replaced by the
// snapshot's storages of the same id and added to by its others.
func (s *Server) loadStorages(snap *Snapshot) (map[string][]*storage, error) {
	storages := map[string][]*storage{}
	for _, n := range s.cfg.Nodes {
		storages[n] = defaultStorages(n)
	}
	seen := map[[2]string]bool{}
	for _, ss := range snap.Storages {
		if err := s.checkNode(fmt.Sprintf("storage %q", ss.ID), ss.Node); err != nil {
			return nil, err
		}
		if ss.ID == "" {
			return nil, fmt.Errorf("load proxmox simulator state: a storage of node %s has no id", ss.Node)
		}
		if seen[[2]string{ss.Node, ss.ID}] {
			return nil, fmt.Errorf("load proxmox simulator state: storage %q of node %s appears twice", ss.ID, ss.Node)
		}
		seen[[2]string{ss.Node, ss.ID}] = true
		if ss.Total <= 0 {
			return nil, fmt.Errorf("load proxmox simulator state: storage %q of node %s has no size", ss.ID, ss.Node)
		}
		st := &storage{id: ss.ID, typ: ss.Type, content: ss.Content, path: ss.Path, total: ss.Total}
		for _, v := range ss.Volumes {
			if !strings.HasPrefix(v.VolID, ss.ID+":") {
				return nil, fmt.Errorf("load proxmox simulator state: volume %q is not on storage %q of node %s", v.VolID, ss.ID, ss.Node)
			}
			vol := &volume{volid: v.VolID, content: v.Content, format: v.Format, size: v.Size, ctime: v.CTime,
				vmid: v.VMID, notes: v.Notes, protected: v.Protected}
			if b := v.Backup; b != nil {
				vm := b.VM
				vm.Tags = slices.Clone(vm.Tags)
				vm.Config = maps.Clone(vm.Config)
				if vm.Config == nil {
					vm.Config = map[string]string{}
				}
				vm.Cores, vm.Sockets, vm.MemoryMB = cmp0(vm.Cores, 1), cmp0(vm.Sockets, 1), cmp0(vm.MemoryMB, 512)
				vol.backup = &backupData{VM: vm, diskBytes: b.DiskBytes, disk: b.Disk}
			}
			st.volumes = append(st.volumes, vol)
		}
		i := slices.IndexFunc(storages[ss.Node], func(x *storage) bool { return x.id == ss.ID })
		if i >= 0 {
			storages[ss.Node][i] = st
		} else {
			storages[ss.Node] = append(storages[ss.Node], st)
		}
	}
	return storages, nil
}
