package sim

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var cloneParams = []string{"newid", "name", "description", "pool", "snapname", "storage", "format", "full", "target", "bwlimit"}

// clone is POST /qemu/{vmid}/clone, after qemu-server's clone_vm. The new
// VM exists at once with its temporary configuration (lock "clone"); the
// source holds a shared configuration file lock while it is stopped and an
// exclusive one while it runs, so that other workers on it fail to lock.
// A full clone takes three task durations, a linked clone of a template
// one.
func (s *Server) clone(r *http.Request, c *call) (any, error) {
	p, err := params(r)
	if err != nil {
		return nil, err
	}
	if err := checkParams(p, cloneParams, "newid", "bwlimit"); err != nil {
		return nil, err
	}
	if p["newid"] == "" {
		return nil, paramError("newid", "property is missing and it is not optional")
	}
	newid, _ := strconv.Atoi(p["newid"])
	if newid < 100 || newid > 999999999 {
		return nil, paramError("newid", "invalid format - value does not look like a valid VM ID\n")
	}
	if name := p["name"]; name != "" && !dnsNameRE.MatchString(name) {
		return nil, paramError("name", "invalid format - value does not look like a valid DNS name\n")
	}
	if f := p["format"]; f != "" && !slices.Contains([]string{"raw", "qcow2", "vmdk"}, f) {
		return nil, paramError("format", fmt.Sprintf("value '%s' does not have a value in the enumeration 'raw, qcow2, vmdk'", f))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	target := p["target"]
	if target == c.node || target == "localhost" {
		target = ""
	}
	if target != "" && !slices.Contains(s.cfg.Nodes, target) {
		return nil, serverError("no such cluster node '%s'", target)
	}
	if sid := p["storage"]; sid != "" {
		st := s.storage(c.node, sid)
		if st == nil {
			return nil, serverError("storage '%s' does not exist", sid)
		}
		if !strings.Contains(st.content, "images") {
			return nil, serverError("storage '%s' does not support vm images", sid)
		}
	}
	if err := lockCheck(src); err != nil {
		return nil, err
	}
	if p["snapname"] != "" {
		return nil, serverError("snapshot '%s' does not exist", p["snapname"])
	}
	full := !src.Template
	if v, ok := p["full"]; ok {
		full = isTrue(v)
	}
	if !full && p["storage"] != "" {
		return nil, serverError("parameter 'storage' not allowed for linked clones")
	}
	if !full && p["format"] != "" {
		return nil, serverError("parameter 'format' not allowed for linked clones")
	}
	if !full && !src.Template {
		return nil, serverError("Linked clone feature is not supported for drive 'scsi0'")
	}
	if target != "" {
		// Every simulated disk is on node-local storage.
		return nil, serverError("can't clone VM to node '%s' (VM uses local storage)", target)
	}
	if _, exists := s.vms[vmKey{c.node, newid}]; exists {
		return nil, serverError("unable to create VM %d: config file already exists", newid)
	}
	mode := "shared"
	if src.Status == "running" {
		mode = "exclusive"
	}
	release, err := src.takeFlock(mode)
	if err != nil {
		return nil, err
	}
	exit := c.taskError
	if _, taken := s.findVM(newid); taken && exit == "" {
		// PVE creates the temporary file in the worker; the cluster file
		// system refuses a VMID that another node has.
		exit = fmt.Sprintf("close (rename) atomic file '/etc/pve/nodes/%s/qemu-server/%d.conf' failed: File exists", c.node, newid)
	}
	var dst *vmState
	if exit == "" || !strings.HasPrefix(exit, "close (rename)") {
		dst = &vmState{VM: VM{Node: c.node, VMID: newid, Status: "stopped", Lock: "clone", Cores: 1, Sockets: 1, MemoryMB: 512,
			Config: map[string]string{}}, temp: true, disk: fmt.Sprintf("local-lvm:vm-%d-disk-0", newid)}
		dst.history = []stateChange{{at: time.Unix(0, 0)}}
		s.vms[vmKey{c.node, newid}] = dst
	}
	d := s.cfg.TaskDuration
	if full {
		d *= 3
	}
	srcName := src.Name
	log := []string{fmt.Sprintf("create %s clone of drive scsi0 (%s)", map[bool]string{true: "full", false: "linked"}[full], src.disk)}
	if exit != "" && !strings.HasPrefix(exit, "close (rename)") {
		exit = "clone failed: " + exit
	}
	t := s.callTask(c, taskSpec{node: c.node, typ: "qmclone", id: strconv.Itoa(c.vmid), d: d, exit: exit, log: log,
		onOK: func() {
			cur, ok := s.vms[vmKey{c.node, c.vmid}]
			if !ok || dst == nil || s.vms[vmKey{c.node, newid}] != dst {
				return
			}
			dst.VM = cur.snapshot()
			dst.Node, dst.VMID, dst.Status, dst.Paused, dst.Lock = c.node, newid, "stopped", false, ""
			dst.Template, dst.IgnoresShutdown = false, false
			dst.Name = p["name"]
			if dst.Name == "" {
				dst.Name = "Copy-of-VM-" + srcName
			}
			if p["description"] != "" {
				dst.Description = p["description"]
			}
			dst.Pool = p["pool"]
			dst.Config = maps.Clone(cur.Config)
			delete(dst.Config, "vmstate")
			delete(dst.Config, "runningmachine")
			for k, v := range dst.Config {
				if strings.HasPrefix(k, "net") {
					model, rest, _ := strings.Cut(v, ",")
					m, _, _ := strings.Cut(model, "=")
					s.macs++
					dst.Config[k] = m + "=" + macFor(newid, s.macs)
					if rest != "" {
						dst.Config[k] += "," + rest
					}
				}
			}
			dst.Config["smbios1"] = "uuid=" + uuidFor(newid, s.macs)
			dst.diskBytes = cur.diskBytes
			switch {
			case full:
				sid := p["storage"]
				if sid == "" {
					sid, _, _ = strings.Cut(cur.disk, ":")
				}
				dst.disk = fmt.Sprintf("%s:vm-%d-disk-0", sid, newid)
			default:
				dst.disk = fmt.Sprintf("%s/vm-%d-disk-0", cur.disk, newid)
			}
			dst.pending, dst.temp = nil, false
		},
		onEnd: func(exit string) {
			release()
			if exit != "" && dst != nil && s.vms[vmKey{c.node, newid}] == dst {
				// PVE frees the new disks and unlinks the temporary file.
				delete(s.vms, vmKey{c.node, newid})
			}
		},
	})
	return t.upid, nil
}

var destroyParams = []string{"purge", "destroy-unreferenced-disks", "skiplock"}

// destroy is DELETE /qemu/{vmid}: a qmdestroy task. A running VM is
// refused before the worker starts; the worker checks the config lock, so
// a locked VM ends the task in error. While the task runs the VM is locked
// "destroyed". Backups of the VM stay in their storage whatever purge
// says: purge only removes the VMID from backup jobs, replication and HA.
func (s *Server) destroy(r *http.Request, c *call) (any, error) {
	p, err := params(r)
	if err != nil {
		return nil, err
	}
	if err := checkParams(p, destroyParams); err != nil {
		return nil, err
	}
	if isTrue(p["skiplock"]) && c.user != "root@pam" {
		return nil, paramError("skiplock", "Only root may use this option.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	if st.Status == "running" {
		return nil, serverError("VM %d is running - destroy failed", c.vmid)
	}
	exit := c.taskError
	if exit == "" && st.Lock != "" && !isTrue(p["skiplock"]) {
		exit = "VM is locked (" + st.Lock + ")"
	}
	release, ferr := st.takeFlock("exclusive")
	if ferr != nil {
		exit, release = ferr.(*apiError).Reason, func() {}
	}
	if exit == "" {
		st.Lock = "destroyed"
	}
	log := []string{fmt.Sprintf("  Logical volume \"vm-%d-disk-0\" successfully removed.", c.vmid)}
	if isTrue(p["purge"]) {
		log = append(log, fmt.Sprintf("purging VM %d from related configurations..", c.vmid))
	}
	t := s.callTask(c, taskSpec{node: c.node, typ: "qmdestroy", id: strconv.Itoa(c.vmid), d: s.cfg.TaskDuration,
		exit: exit, log: log,
		onOK:  func() { delete(s.vms, vmKey{c.node, c.vmid}) },
		onEnd: func(string) { release() },
	})
	return t.upid, nil
}

var sizeRE = regexp.MustCompile(`^(\+)?(\d+(\.\d+)?)([KMGT])?$`)

// resize is PUT /qemu/{vmid}/resize. On PVE 8 it returns a task, of type
// "resize" (the web UI's task list has no "qmresize"); the checks PVE
// makes before forking (lock, digest, disk, shrinking) are errors of the
// request.
func (s *Server) resize(r *http.Request, c *call) (any, error) {
	p, err := params(r)
	if err != nil {
		return nil, err
	}
	if err := checkParams(p, []string{"disk", "size", "digest", "skiplock"}); err != nil {
		return nil, err
	}
	for _, k := range []string{"disk", "size"} {
		if p[k] == "" {
			return nil, paramError(k, "property is missing and it is not optional")
		}
	}
	if !configOption(p["disk"]) || !indexedKey.MatchString(p["disk"]) || strings.HasPrefix(p["disk"], "net") || strings.HasPrefix(p["disk"], "ipconfig") {
		return nil, paramError("disk", fmt.Sprintf("value '%s' does not have a value in the enumeration 'ide0, ide1, ide2, ide3, scsi0, ..., virtio15'", p["disk"]))
	}
	m := sizeRE.FindStringSubmatch(p["size"])
	if m == nil {
		return nil, paramError("size", "value does not match the regex pattern")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	if d := p["digest"]; d != "" && d != st.digest() {
		return nil, serverError("checksum missmatch (file change by other user?)")
	}
	if !isTrue(p["skiplock"]) {
		if err := lockCheck(st); err != nil {
			return nil, err
		}
	}
	cur := st.currentConfig()
	if _, ok := cur[p["disk"]]; !ok {
		return nil, serverError("disk '%s' does not exist", p["disk"])
	}
	if p["disk"] != "scsi0" {
		if strings.Contains(cur[p["disk"]], "media=cdrom") {
			return nil, serverError("you can't resize a cdrom")
		}
		return nil, serverError("disk '%s' has no associated volume", p["disk"])
	}
	n, _ := strconv.ParseFloat(m[2], 64)
	n *= float64(map[string]int64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": gib, "T": gib << 10}[m[4]])
	newSize := int64(n)
	if m[1] == "+" {
		newSize += st.diskBytes
	}
	if newSize < st.diskBytes {
		return nil, serverError("shrinking disks is not supported")
	}
	release, err := st.takeFlock("exclusive")
	if err != nil {
		return nil, err
	}
	log := []string{fmt.Sprintf("  Size of logical volume pve/vm-%d-disk-0 changed from %s to %s.", c.vmid, formatSize(st.diskBytes), formatSize(newSize))}
	t := s.callTask(c, taskSpec{node: c.node, typ: "resize", id: strconv.Itoa(c.vmid), d: s.cfg.TaskDuration,
		exit: c.taskError, log: log,
		onOK: func() {
			if v, ok := s.vms[vmKey{c.node, c.vmid}]; ok && v.diskBytes < newSize {
				v.diskBytes = newSize
			}
		},
		onEnd: func(string) { release() },
	})
	return t.upid, nil
}

var createParams = []string{"vmid", "archive", "force", "storage", "unique", "start", "pool", "bwlimit", "live-restore"}

// qemuCreate is POST /nodes/{node}/qemu: a restore when archive names a
// backup (qmrestore), else a new VM from the configuration parameters
// (qmcreate; scsi0 "STORAGE:SIZE_IN_GB" allocates its disk).
func (s *Server) qemuCreate(r *http.Request, c *call) (any, error) {
	p, err := params(r)
	if err != nil {
		return nil, err
	}
	if p["vmid"] == "" {
		return nil, paramError("vmid", "property is missing and it is not optional")
	}
	vmid, err := strconv.Atoi(p["vmid"])
	if err != nil || vmid < 100 {
		return nil, paramError("vmid", fmt.Sprintf("type check ('integer') failed - got '%s'", p["vmid"]))
	}
	c.vmid = vmid
	conf := map[string]string{}
	for k, v := range p {
		if !slices.Contains(createParams, k) {
			conf[k] = v
		}
	}
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p["archive"] != "" {
		if len(conf) > 0 {
			for k := range conf {
				if !configOption(k) {
					return nil, paramError(k, "property is not defined in schema and the schema does not allow additional properties")
				}
			}
		}
		return s.restore(c, p)
	}
	if isTrue(p["force"]) {
		return nil, paramError("force", "missing property - 'archive' is required by 'force'")
	}
	scsi0 := conf["scsi0"]
	delete(conf, "scsi0")
	if err := s.validateConfig(c.node, vmid, conf); err != nil {
		return nil, err
	}
	if other, taken := s.findVM(vmid); taken {
		return nil, serverError("unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, other.Node)
	}
	var diskBytes int64 = 0
	sid := "local-lvm"
	if scsi0 != "" {
		file, _, _ := strings.Cut(scsi0, ",")
		var size string
		sid, size, _ = strings.Cut(file, ":")
		if s.storage(c.node, sid) == nil {
			return nil, serverError("storage '%s' does not exist", sid)
		}
		gb, err := strconv.ParseFloat(size, 64)
		if err != nil {
			return nil, paramError("scsi0", "invalid format - format error\nscsi0.file: invalid format - unable to parse volume ID '"+file+"'\n")
		}
		diskBytes = int64(gb * gib)
	}
	st := &vmState{VM: VM{Node: c.node, VMID: vmid, Status: "stopped", Lock: "create", Cores: 1, Sockets: 1, MemoryMB: 512,
		Config: map[string]string{"smbios1": "uuid=" + uuidFor(vmid, 1)}, Pool: p["pool"]},
		diskBytes: diskBytes, disk: fmt.Sprintf("%s:vm-%d-disk-0", sid, vmid)}
	st.history = []stateChange{{at: time.Unix(0, 0)}}
	for k, v := range conf {
		st.setKey(k, v)
	}
	s.vms[vmKey{c.node, vmid}] = st
	t := s.callTask(c, taskSpec{node: c.node, typ: "qmcreate", id: strconv.Itoa(vmid), d: s.cfg.TaskDuration, exit: c.taskError,
		onOK: func() { st.Lock = "" },
		onEnd: func(exit string) {
			if exit != "" && s.vms[vmKey{c.node, vmid}] == st {
				delete(s.vms, vmKey{c.node, vmid})
			}
		}})
	return t.upid, nil
}

// restore is the archive half of POST /nodes/{node}/qemu: a qmrestore task.
// Restoring over an existing VM needs force and the VM stopped and on this
// node; the VM is locked "create" while the task runs and afterwards has
// the backup's configuration and disk. The lock must be held.
func (s *Server) restore(c *call, p map[string]string) (any, error) {
	vol, _, err := s.volume(c.node, p["archive"])
	if err != nil {
		return nil, err
	}
	if vol.content != "backup" || vol.backup == nil {
		return nil, serverError("unable to restore VM %d - unknown backup archive type '%s'", c.vmid, vol.volid)
	}
	sid := p["storage"]
	if sid != "" {
		st := s.storage(c.node, sid)
		if st == nil {
			return nil, serverError("storage '%s' does not exist", sid)
		}
		if !strings.Contains(st.content, "images") {
			return nil, serverError("storage '%s' does not support vm images", sid)
		}
	}
	existing, exists := s.findVM(c.vmid)
	if exists {
		switch {
		case !isTrue(p["force"]) || existing.Node != c.node:
			return nil, serverError("unable to restore VM %d - VM %d already exists on node '%s'", c.vmid, c.vmid, existing.Node)
		case existing.Status == "running":
			return nil, serverError("unable to restore VM %d - vm is running", c.vmid)
		}
		if err := lockCheck(existing); err != nil {
			return nil, err
		}
	}
	var release func()
	st := existing
	if exists {
		if release, err = existing.takeFlock("exclusive"); err != nil {
			return nil, err
		}
		st.Lock = "create"
	} else {
		release = func() {}
		st = &vmState{VM: VM{Node: c.node, VMID: c.vmid, Status: "stopped", Lock: "create", Cores: 1, Sockets: 1, MemoryMB: 512,
			Config: map[string]string{}}, temp: false, disk: fmt.Sprintf("local-lvm:vm-%d-disk-0", c.vmid)}
		st.history = []stateChange{{at: time.Unix(0, 0)}}
		s.vms[vmKey{c.node, c.vmid}] = st
	}
	backup := vol.backup
	log := []string{
		fmt.Sprintf("restore vma archive: zstd -q -d -c /var/lib/vz/dump/%s | vma extract -v -r /var/tmp/vzdumptmp.fifo - /var/tmp/vzdumptmp", strings.TrimPrefix(vol.volid, "local:backup/")),
		fmt.Sprintf("CFG: size: %d name: qemu-server.conf", 512),
	}
	t := s.callTask(c, taskSpec{node: c.node, typ: "qmrestore", id: strconv.Itoa(c.vmid), d: 3 * s.cfg.TaskDuration,
		exit: c.taskError, log: log,
		onOK: func() {
			vm := backup.VM
			vm.Node, vm.VMID, vm.Status, vm.Paused, vm.Lock = c.node, c.vmid, "stopped", false, ""
			vm.Tags = slices.Clone(backup.Tags)
			vm.Config = maps.Clone(backup.Config)
			delete(vm.Config, "vmstate")
			if isTrue(p["unique"]) {
				for k, v := range vm.Config {
					if strings.HasPrefix(k, "net") {
						model, rest, _ := strings.Cut(v, ",")
						m, _, _ := strings.Cut(model, "=")
						s.macs++
						vm.Config[k] = m + "=" + macFor(c.vmid, s.macs)
						if rest != "" {
							vm.Config[k] += "," + rest
						}
					}
				}
			}
			if p["pool"] != "" {
				vm.Pool = p["pool"]
			}
			st.VM = vm
			st.diskBytes = backup.diskBytes
			storage := sid
			if storage == "" {
				storage, _, _ = strings.Cut(backup.disk, ":")
			}
			st.disk = fmt.Sprintf("%s:vm-%d-disk-0", storage, c.vmid)
			st.pending, st.temp = nil, false
			if isTrue(p["start"]) {
				st.setRunning(true)
			}
		},
		onEnd: func(exit string) {
			release()
			if exit == "" {
				return
			}
			if !exists && s.vms[vmKey{c.node, c.vmid}] == st {
				delete(s.vms, vmKey{c.node, c.vmid})
			} else if exists {
				// A failed restore over a VM leaves it locked, as PVE does.
				st.Lock = "create"
			}
		},
	})
	return t.upid, nil
}
