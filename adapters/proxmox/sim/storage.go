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

// storage is one node's storage: "local" (a directory for ISOs, templates
// and backups) and "local-lvm" (an LVM-thin pool for disks), as a fresh
// PVE installation has.
type storage struct {
	id, typ, content, path string
	total                  int64
	volumes                []*volume // ISOs and backups; disks are the VMs'
}

// volume is a file in a directory storage.
type volume struct {
	volid, content, format string
	size                   int64
	ctime                  int64
	vmid                   int
	notes                  string
	protected              bool
	backup                 *backupData // what a restore brings back
}

// backupData is the VM as a backup holds it.
type backupData struct {
	VM
	diskBytes int64
	disk      string
}

// ISOs every node's "local" storage starts with.
var demoISOs = []struct {
	name string
	size int64
}{
	{"rescue.iso", 812 << 20},
	{"debian-12.8.0-amd64-netinst.iso", 631 << 20},
	{"ubuntu-24.04.1-live-server-amd64.iso", 2773 << 20},
	{"AlmaLinux-9.5-x86_64-minimal.iso", 1862 << 20},
}

func defaultStorages(node string) []*storage {
	local := &storage{id: "local", typ: "dir", content: "backup,iso,vztmpl", path: "/var/lib/vz", total: 100 * gib}
	created := time.Date(2024, 11, 20, 9, 30, 0, 0, time.UTC).Unix()
	for i, iso := range demoISOs {
		local.volumes = append(local.volumes, &volume{volid: "local:iso/" + iso.name, content: "iso", format: "iso",
			size: iso.size, ctime: created + int64(i)*3600})
	}
	return []*storage{local, {id: "local-lvm", typ: "lvmthin", content: "images,rootdir", total: 1800 * gib}}
}

// storage finds a node's storage; the lock must be held.
func (s *Server) storage(node, id string) *storage {
	for _, st := range s.storages[node] {
		if st.id == id {
			return st
		}
	}
	return nil
}

// volume finds a volume by its id on a node, with PVE's errors; the lock
// must be held.
func (s *Server) volume(node, volid string) (*volume, *storage, error) {
	sid, name, ok := strings.Cut(volid, ":")
	if !ok {
		return nil, nil, serverError("unable to parse volume ID '%s'", volid)
	}
	st := s.storage(node, sid)
	if st == nil {
		return nil, nil, serverError("storage '%s' does not exist", sid)
	}
	if st.typ == "dir" && !regexp.MustCompile(`^(iso|backup|vztmpl|snippets|images)/`).MatchString(name) {
		return nil, nil, serverError("unable to parse directory volume name '%s'", name)
	}
	for _, v := range st.volumes {
		if v.volid == volid {
			return v, st, nil
		}
	}
	return nil, st, serverError("volume '%s' does not exist", volid)
}

// usage is the space a storage's volumes take, disks included; the lock
// must be held.
func (s *Server) usage(node string, st *storage) int64 {
	var used int64
	for _, v := range st.volumes {
		used += v.size
	}
	if strings.Contains(st.content, "images") {
		for k, vm := range s.vms {
			if k.node == node && strings.HasPrefix(vm.disk, st.id+":") {
				used += vm.diskBytes / 3 // thin provisioned
			}
		}
	}
	return used
}

// storageInfo is a storage as /nodes/{node}/storage lists it; the lock
// must be held.
func (s *Server) storageInfo(node string, st *storage) map[string]any {
	used := s.usage(node, st)
	return map[string]any{
		"storage": st.id, "type": st.typ, "content": st.content, "active": 1, "enabled": 1, "shared": 0,
		"total": st.total, "used": used, "avail": st.total - used, "used_fraction": float64(used) / float64(st.total),
	}
}

var storageListParams = []string{"content", "enabled", "format", "storage", "target"}

func (s *Server) storageList(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	p, _ := params(r)
	if err := checkParams(p, storageListParams); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, st := range s.storages[c.node] {
		if ct := p["content"]; ct != "" && !slices.ContainsFunc(strings.Split(ct, ","), func(x string) bool { return strings.Contains(st.content, x) }) {
			continue
		}
		if id := p["storage"]; id != "" && id != st.id {
			continue
		}
		out = append(out, s.storageInfo(c.node, st))
	}
	return out, nil
}

func (s *Server) storageStatus(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.storage(c.node, r.PathValue("storage"))
	if st == nil {
		return nil, serverError("storage '%s' does not exist", r.PathValue("storage"))
	}
	return s.storageInfo(c.node, st), nil
}

var contentTypes = []string{"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}

// contentItem is a volume as the content listing shows it.
func (v *volume) item() map[string]any {
	m := map[string]any{"volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime}
	if v.content == "backup" {
		m["vmid"] = v.vmid
		m["subtype"] = "qemu"
		if v.notes != "" {
			m["notes"] = strings.SplitN(v.notes, "\n", 2)[0]
		}
		if v.protected {
			m["protected"] = 1
		}
	}
	return m
}

// contentList is GET /storage/{storage}/content with its content and vmid
// filters; disks of the node's VMs are listed on the LVM-thin storage.
func (s *Server) contentList(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	p, _ := params(r)
	if err := checkParams(p, []string{"content", "vmid"}, "vmid"); err != nil {
		return nil, err
	}
	if ct := p["content"]; ct != "" && !slices.Contains(contentTypes, ct) {
		return nil, paramError("content", fmt.Sprintf("invalid format - invalid content type '%s'\n", ct))
	}
	vmid, _ := strconv.Atoi(p["vmid"])
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.storage(c.node, r.PathValue("storage"))
	if st == nil {
		return nil, serverError("storage '%s' does not exist", r.PathValue("storage"))
	}
	out := []map[string]any{}
	want := func(content string, id int) bool {
		return (p["content"] == "" || p["content"] == content) && (vmid == 0 || vmid == id)
	}
	for _, v := range st.volumes {
		if want(v.content, v.vmid) {
			out = append(out, v.item())
		}
	}
	if strings.Contains(st.content, "images") {
		for _, k := range slices.SortedFunc(maps.Keys(s.vms), func(a, b vmKey) int { return a.vmid - b.vmid }) {
			vm := s.vms[k]
			if k.node != c.node || !strings.HasPrefix(vm.disk, st.id+":") || vm.temp || !want("images", k.vmid) {
				continue
			}
			item := map[string]any{"volid": vm.disk, "content": "images", "format": "raw", "size": vm.diskBytes,
				"vmid": k.vmid, "ctime": 1732090000}
			if base, _, ok := strings.Cut(vm.disk, "/"); ok {
				item["parent"] = strings.TrimPrefix(base, st.id+":")
				item["volid"] = st.id + ":" + strings.TrimPrefix(vm.disk[strings.Index(vm.disk, "/")+1:], st.id+":")
			}
			out = append(out, item)
		}
	}
	return out, nil
}

// realVolumeID resolves the {volume} of a content path, which may omit the
// storage prefix, as PVE's real_volume_id does.
func realVolumeID(storeid, volume string) (string, error) {
	if sid, _, ok := strings.Cut(volume, ":"); ok {
		if storeid != "" && sid != storeid {
			return "", paramError("volume", fmt.Sprintf("storage ID mismatch (%s != %s)\n", sid, storeid))
		}
		return volume, nil
	}
	return storeid + ":" + volume, nil
}

func (s *Server) contentGet(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	volid, err := realVolumeID(r.PathValue("storage"), r.PathValue("volume"))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, st, err := s.volume(c.node, volid)
	if err != nil {
		if st != nil && strings.Contains(err.Error(), "does not exist") && !strings.HasPrefix(err.Error(), "500 storage") {
			return nil, serverError("volume_size_info on '%s' failed - no format", volid)
		}
		return nil, err
	}
	m := map[string]any{"path": volumePath(st, v), "size": v.size, "used": v.size, "format": v.format}
	if v.notes != "" {
		m["notes"] = v.notes
	}
	if v.content == "backup" {
		m["protected"] = map[bool]int{true: 1, false: 0}[v.protected]
	}
	return m, nil
}

func volumePath(st *storage, v *volume) string {
	_, name, _ := strings.Cut(v.volid, ":")
	dir, file, _ := strings.Cut(name, "/")
	sub := map[string]string{"iso": "template/iso", "backup": "dump", "vztmpl": "template/cache"}[dir]
	return st.path + "/" + sub + "/" + file
}

// contentDelete is DELETE /storage/{storage}/content/{volume}: an imgdel
// task whose id is "VMID@STORAGE" for a backup. A volume that is not there
// ends the task with a warning, as PVE's directory plugin does.
func (s *Server) contentDelete(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	p, _ := params(r)
	if err := checkParams(p, []string{"delay"}, "delay"); err != nil {
		return nil, err
	}
	volid, err := realVolumeID(r.PathValue("storage"), r.PathValue("volume"))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, st, err := s.volume(c.node, volid)
	var warnings []string
	if err != nil {
		if st == nil || !strings.Contains(err.Error(), "' does not exist") {
			return nil, err
		}
		_, name, _ := strings.Cut(volid, ":")
		dir, file, _ := strings.Cut(name, "/")
		sub := map[string]string{"iso": "template/iso", "backup": "dump", "vztmpl": "template/cache"}[dir]
		warnings = append(warnings, fmt.Sprintf("disk image '%s/%s/%s' does not exist", st.path, sub, file))
	}
	id := st.id
	if v != nil && v.vmid != 0 {
		id = fmt.Sprintf("%d@%s", v.vmid, st.id)
	}
	if v != nil && v.protected {
		return nil, serverError("cannot delete protected volume '%s'", volid)
	}
	t := s.callTask(c, taskSpec{node: c.node, typ: "imgdel", id: id, d: s.cfg.TaskDuration / 2, exit: c.taskError,
		log: []string{fmt.Sprintf("Removed volume '%s'", volid)}, warnings: warnings,
		onOK: func() {
			st.volumes = slices.DeleteFunc(st.volumes, func(x *volume) bool { return x == v })
		}})
	return t.upid, nil
}

// backupsOf lists a VM's backups on a node, oldest first; the lock must be
// held.
func (s *Server) backupsOf(node string, vmid int) []*volume {
	var out []*volume
	for _, st := range s.storages[node] {
		for _, v := range st.volumes {
			if v.content == "backup" && v.vmid == vmid {
				out = append(out, v)
			}
		}
	}
	slices.SortFunc(out, func(a, b *volume) int { return int(a.ctime - b.ctime) })
	return out
}

var compressExt = map[string]string{"0": "", "": "", "1": ".lzo", "lzo": ".lzo", "gzip": ".gz", "zstd": ".zst"}

// addBackup stores a backup of st taken at when; the lock must be held.
func (s *Server) addBackup(node, sid string, st *vmState, when time.Time, compress, notes string) *volume {
	ext := compressExt[compress]
	v := &volume{
		volid:   fmt.Sprintf("%s:backup/vzdump-qemu-%d-%s.vma%s", sid, st.VMID, when.UTC().Format("2006_01_02-15_04_05"), ext),
		content: "backup", format: "vma" + ext, ctime: when.Unix(), vmid: st.VMID, notes: notes,
		size:   st.diskBytes/5 + int64(st.MemoryMB)<<10 + int64(st.VMID%97)<<20,
		backup: &backupData{VM: st.snapshot(), diskBytes: st.diskBytes, disk: st.disk},
	}
	if stor := s.storage(node, sid); stor != nil {
		stor.volumes = append(stor.volumes, v)
	}
	return v
}

var vzdumpParams = []string{"vmid", "storage", "mode", "compress", "remove", "notes-template", "prune-backups", "all",
	"bwlimit", "dumpdir", "exclude", "exclude-path", "ionice", "lockwait", "mailto", "mailnotification", "maxfiles",
	"node", "notification-mode", "notification-policy", "notification-target", "performance", "pigz", "pool", "protected",
	"quiet", "script", "stdexcludes", "stdout", "stop", "stopwait", "tmpdir", "zstd", "fleecing", "job-id"}

var templateVarRE = regexp.MustCompile(`\{\{([^}]*)\}\}`)

// vzdump is POST /nodes/{node}/vzdump for VMs on the node: one vzdump task
// whose id is the VMID when it backs up one VM. Each VM is locked "backup"
// while the task runs; a VM that is already locked fails its part of the
// job, which then ends in "job errors". notes-template expands
// {{cluster}}, {{guestname}}, {{node}} and {{vmid}}; prune-backups
// keep-last (with remove, the default) removes older backups afterwards.
func (s *Server) vzdump(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	p, err := params(r)
	if err != nil {
		return nil, err
	}
	if err := checkParams(p, vzdumpParams, "bwlimit", "ionice", "lockwait", "pigz", "stopwait", "zstd"); err != nil {
		return nil, err
	}
	mode := p["mode"]
	if mode == "" {
		mode = "snapshot"
	}
	if !slices.Contains([]string{"snapshot", "suspend", "stop"}, mode) {
		return nil, paramError("mode", fmt.Sprintf("value '%s' does not have a value in the enumeration 'snapshot, suspend, stop'", mode))
	}
	compress := p["compress"]
	if _, ok := compressExt[compress]; !ok {
		return nil, paramError("compress", fmt.Sprintf("value '%s' does not have a value in the enumeration '0, 1, gzip, lzo, zstd'", compress))
	}
	keepLast := -1
	if pb := p["prune-backups"]; pb != "" {
		for _, part := range strings.Split(pb, ",") {
			k, v, _ := strings.Cut(part, "=")
			n, err := strconv.Atoi(v)
			if err != nil || !slices.Contains([]string{"keep-all", "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"}, k) {
				return nil, paramError("prune-backups", fmt.Sprintf("invalid format - format error\nprune-backups.%s: property is not defined in schema and the schema does not allow additional properties\n", k))
			}
			if k == "keep-last" {
				keepLast = n
			}
		}
	}
	if tmpl := p["notes-template"]; tmpl != "" {
		for _, m := range templateVarRE.FindAllStringSubmatch(tmpl, -1) {
			if !slices.Contains([]string{"cluster", "guestname", "node", "vmid"}, m[1]) {
				return nil, paramError("notes-template", fmt.Sprintf("unexpected variable name '%s'", m[1]))
			}
		}
	}
	if p["vmid"] == "" && !isTrue(p["all"]) {
		return nil, paramError("vmid", "at least one of 'all' or 'vmid' is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sid := p["storage"]
	if sid == "" {
		sid = "local"
	}
	stor := s.storage(c.node, sid)
	if stor == nil {
		return nil, serverError("storage '%s' does not exist", sid)
	}
	if !strings.Contains(stor.content, "backup") {
		return nil, serverError("can't use storage '%s' for backups - wrong content type", sid)
	}
	var ids []int
	if isTrue(p["all"]) {
		for k := range s.vms {
			if k.node == c.node && !s.vms[k].temp {
				ids = append(ids, k.vmid)
			}
		}
	}
	for _, v := range strings.FieldsFunc(p["vmid"], func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
		id, err := strconv.Atoi(v)
		if err != nil || id < 100 {
			return nil, paramError("vmid", fmt.Sprintf("invalid format - value '%s' does not look like a valid VM ID\n", v))
		}
		if _, ok := s.vms[vmKey{c.node, id}]; !ok {
			if _, elsewhere := s.findVM(id); !elsewhere {
				return nil, serverError("Unable to find VM %d", id)
			}
			continue // another node backs it up
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return nil, serverError("no VMs to back up on node '%s'", c.node)
	}
	taskID := ""
	if len(ids) == 1 {
		taskID = strconv.Itoa(ids[0])
	}
	// vzdump names the archive and dates the backup by the node's clock.
	start := s.nodeNow(c.node)
	log := []string{fmt.Sprintf("INFO: starting new backup job: vzdump %s --storage %s --mode %s", strings.Trim(fmt.Sprint(ids), "[]"), sid, mode)}
	type part struct {
		st      *vmState
		release func()
	}
	var parts []part
	var failed []int
	for _, id := range ids {
		st := s.vms[vmKey{c.node, id}]
		log = append(log, fmt.Sprintf("INFO: Starting Backup of VM %d (qemu)", id))
		if st.Lock != "" {
			log = append(log, fmt.Sprintf("ERROR: Backup of VM %d failed - VM is locked (%s)", id, st.Lock))
			failed = append(failed, id)
			continue
		}
		release, err := st.takeFlock("shared")
		if err != nil {
			log = append(log, fmt.Sprintf("ERROR: Backup of VM %d failed - %s", id, err.(*apiError).Reason))
			failed = append(failed, id)
			continue
		}
		st.Lock = "backup"
		ext := compressExt[compress]
		log = append(log, fmt.Sprintf("INFO: creating vzdump archive '%s/dump/vzdump-qemu-%d-%s.vma%s'", stor.path, id, start.UTC().Format("2006_01_02-15_04_05"), ext))
		parts = append(parts, part{st, release})
	}
	exit := c.taskError
	if exit == "" && len(failed) > 0 {
		exit = "job errors"
	}
	notesFor := func(st *vmState) string {
		return templateVarRE.ReplaceAllStringFunc(p["notes-template"], func(m string) string {
			switch strings.Trim(m, "{}") {
			case "cluster":
				return "sim-cluster"
			case "guestname":
				return st.Name
			case "node":
				return c.node
			}
			return strconv.Itoa(st.VMID)
		})
	}
	var t *task
	t = s.callTask(c, taskSpec{node: c.node, typ: "vzdump", id: taskID, d: 3 * s.cfg.TaskDuration, exit: exit, log: log,
		onEnd: func(exit string) {
			if exit == "" {
				t.log = append(t.log, "INFO: Backup job finished successfully")
			}
			for _, pt := range parts {
				pt.release()
				if pt.st.Lock == "backup" {
					pt.st.Lock = ""
				}
				if exit != "" && exit != "job errors" {
					continue
				}
				s.addBackup(c.node, sid, pt.st, start, compress, notesFor(pt.st))
				if keepLast >= 0 && (p["remove"] == "" || isTrue(p["remove"])) {
					all := s.backupsOf(c.node, pt.st.VMID)
					for i, v := range all {
						if i < len(all)-keepLast && !v.protected {
							stor.volumes = slices.DeleteFunc(stor.volumes, func(x *volume) bool { return x == v })
						}
					}
				}
			}
		},
	})
	return t.upid, nil
}
