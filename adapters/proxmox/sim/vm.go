package sim

import (
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// VM is a simulated QEMU virtual machine.
type VM struct {
	Node     string   `json:"node"`
	VMID     int      `json:"vmid"`
	Name     string   `json:"name"`
	Status   string   `json:"status"` // "running" or "stopped"
	Paused   bool     `json:"paused"` // suspended to memory; Status stays "running"
	Lock     string   `json:"lock,omitempty"`
	Cores    int      `json:"cores"`
	MemoryMB int      `json:"memoryMb"`
	DiskGB   int      `json:"diskGb"`
	Tags     []string `json:"tags,omitempty"`
	// Template marks a template: it cannot be started.
	Template bool `json:"template,omitempty"`
	// IgnoresShutdown makes the guest ignore ACPI shutdown, so that a
	// shutdown task runs into its timeout.
	IgnoresShutdown bool `json:"ignoresShutdown,omitempty"`
	// NoAgent says the guest has no QEMU guest agent installed: with the
	// agent enabled in the configuration, it never answers. A clone
	// inherits it from its template, as it inherits the image.
	NoAgent bool `json:"noAgent,omitempty"`

	// Sockets defaults to 1.
	Sockets     int    `json:"sockets,omitempty"`
	Description string `json:"description,omitempty"`
	// Pool is the resource pool the VM was cloned or restored into.
	Pool string `json:"pool,omitempty"`
	// Config holds the other configuration keys as PVE stores them:
	// ciuser, cipassword (hashed), sshkeys (URL-encoded), ipconfig0, net0,
	// boot, ide2, ostype, vmstate... AddVM fills in ostype, scsihw, agent,
	// net0 and boot when they are missing.
	Config map[string]string `json:"config,omitempty"`
	// SeedBackups is demo data: AddVM makes that many backups of the VM,
	// a day apart, in its node's "local" storage when it has none yet.
	// VM and VMs report it as zero.
	SeedBackups int `json:"seedBackups,omitempty"`
}

type vmState struct {
	VM
	diskBytes int64
	// disk is scsi0's volume id without its size.
	disk    string
	started time.Time // when it last started running
	// pending holds changes of a running VM that apply when it next
	// starts: cores, sockets, memory and boot.
	pending map[string]string
	// temp marks a clone target while its clone runs: its configuration
	// is PVE's temporary file.
	temp bool
	// flock is the configuration file lock a worker holds: "shared" or
	// "exclusive". It is not the config's "lock" property (VM.Lock).
	flock   string
	flocks  int
	history []stateChange // power history, for RRD data
	load    *Load         // usage set by a test; nil is the default
}

// Load is the usage a running VM reports, for tests of usage collection
// and alerting.
type Load struct {
	CPU    float64 // share of its cores, 0 to 1
	Memory float64 // share of its memory, 0 to 1
	Disk   float64 // share of its disk, 0 to 1
}

// SetLoad makes the VM report load while it runs, from now on.
func (s *Server) SetLoad(node string, vmid int, load Load) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.vms[vmKey{node, vmid}]
	if ok {
		st.load = &load
	}
	return ok
}

type stateChange struct {
	at      time.Time
	running bool
}

// DemoVMs are the VMs `provisiond dev` starts with: a template and three
// guests in different power states, two of them with backups.
func DemoVMs() []VM {
	return []VM{
		{Node: "pve1", VMID: 9000, Name: "debian-12-template", Status: "stopped", Cores: 1, MemoryMB: 1024, DiskGB: 10, Template: true,
			Config: map[string]string{"ciuser": "debian", "ipconfig0": "ip=dhcp"}},
		{Node: "pve1", VMID: 100, Name: "web-1", Status: "running", Cores: 2, MemoryMB: 2048, DiskGB: 40, Tags: []string{"demo"}, SeedBackups: 2},
		{Node: "pve1", VMID: 101, Name: "db-1", Status: "stopped", Cores: 4, MemoryMB: 8192, DiskGB: 80, Tags: []string{"demo"}, SeedBackups: 1},
		{Node: "pve2", VMID: 102, Name: "game-1", Status: "running", Cores: 4, MemoryMB: 4096, DiskGB: 60, Tags: []string{"demo"}},
	}
}

// AddVM adds or replaces a VM. Missing sizes get small defaults.
func (s *Server) AddVM(vm VM) {
	if vm.Status == "" {
		vm.Status = "stopped"
	}
	if vm.Name == "" {
		vm.Name = fmt.Sprintf("vm%d", vm.VMID)
	}
	vm.Cores = cmp0(vm.Cores, 1)
	vm.Sockets = cmp0(vm.Sockets, 1)
	vm.MemoryMB = cmp0(vm.MemoryMB, 512)
	vm.DiskGB = cmp0(vm.DiskGB, 8)
	vm.Tags = slices.Clone(vm.Tags)
	vm.Config = maps.Clone(vm.Config)
	if vm.Config == nil {
		vm.Config = map[string]string{}
	}
	defaults := map[string]string{
		"ostype": "l26", "scsihw": "virtio-scsi-single", "agent": "1",
		"net0": "virtio=" + macFor(vm.VMID, 0) + ",bridge=vmbr0", "boot": "order=scsi0;net0",
		"smbios1": "uuid=" + uuidFor(vm.VMID, 0),
	}
	for k, v := range defaults {
		if _, ok := vm.Config[k]; !ok {
			vm.Config[k] = v
		}
	}
	if vm.Lock == "suspended" && vm.Config["vmstate"] == "" {
		vm.Config["vmstate"] = fmt.Sprintf("local-lvm:vm-%d-state-suspend-%s", vm.VMID, time.Now().UTC().Format("2006-01-02"))
	}
	seed := vm.SeedBackups
	vm.SeedBackups = 0
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &vmState{VM: vm, diskBytes: int64(vm.DiskGB) * gib, disk: fmt.Sprintf("local-lvm:vm-%d-disk-0", vm.VMID)}
	if vm.Template {
		st.disk = fmt.Sprintf("local-lvm:base-%d-disk-0", vm.VMID)
	}
	st.history = []stateChange{{at: time.Unix(0, 0), running: vm.Status == "running"}}
	if vm.Status == "running" {
		st.started = time.Now()
	}
	s.vms[vmKey{vm.Node, vm.VMID}] = st
	if seed > 0 && len(s.backupsOf(vm.Node, vm.VMID)) == 0 {
		for i := seed; i >= 1; i-- {
			s.addBackup(vm.Node, "local", st, s.nodeNow(vm.Node).Add(-time.Duration(i)*24*time.Hour), "zstd", vm.Name)
		}
	}
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// macFor is a stable MAC address for a VM's nth NIC, with Proxmox's
// BC:24:11 prefix.
func macFor(vmid, n int) string {
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", (vmid>>8)&0xff, vmid&0xff, (n*16+vmid>>16)&0xff)
}

func uuidFor(vmid, gen int) string {
	h := sha1.Sum([]byte(fmt.Sprintf("vm-%d-%d", vmid, gen)))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// snapshot is a copy of the VM's state safe to hand out; the lock must be
// held.
func (st *vmState) snapshot() VM {
	vm := st.VM
	vm.Tags = slices.Clone(vm.Tags)
	vm.Config = maps.Clone(vm.Config)
	vm.DiskGB = int((st.diskBytes + gib - 1) / gib)
	return vm
}

// MoveVM moves a VM to another node with everything it has, as a migration
// (or HA after a node failure) does behind the fleet's back.
func (s *Server) MoveVM(node string, vmid int, to string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.vms[vmKey{node, vmid}]
	if !ok || s.knownNode(to) != nil {
		return false
	}
	delete(s.vms, vmKey{node, vmid})
	st.Node = to
	s.vms[vmKey{to, vmid}] = st
	return true
}

// VM returns a copy of the VM's current state.
func (s *Server) VM(node string, vmid int) (VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.vms[vmKey{node, vmid}]
	if !ok {
		return VM{}, false
	}
	return st.snapshot(), true
}

// VMs returns every VM, ordered by VMID.
func (s *Server) VMs() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VM, 0, len(s.vms))
	for _, st := range s.vms {
		out = append(out, st.snapshot())
	}
	slices.SortFunc(out, func(a, b VM) int { return a.VMID - b.VMID })
	return out
}

// findVM finds a VM on any node; the lock must be held.
func (s *Server) findVM(vmid int) (*vmState, bool) {
	for k, st := range s.vms {
		if k.vmid == vmid {
			return st, true
		}
	}
	return nil, false
}

func (s *Server) version(*http.Request, *call) (any, error) {
	return map[string]any{"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}, nil
}

// knownNode checks the node name the way pveproxy does: an unknown one
// fails its hostname lookup.
func (s *Server) knownNode(node string) error {
	if slices.Contains(s.cfg.Nodes, node) {
		return nil
	}
	return serverError("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", node, node)
}

const gib = 1 << 30

// nodeUsage sums the node's guests; the lock must be held.
func (s *Server) nodeUsage(node string) (cores, memMB, running int) {
	for k, vm := range s.vms {
		if k.node == node && vm.Status == "running" {
			cores += vm.Cores * vm.Sockets
			memMB += vm.MemoryMB
			running++
		}
	}
	return
}

func (s *Server) nodes(*http.Request, *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, 0, len(s.cfg.Nodes))
	for _, n := range s.cfg.Nodes {
		out = append(out, s.nodeResource(n))
	}
	return out, nil
}

// nodeResource is the node as /nodes and /cluster/resources list it; the
// lock must be held.
func (s *Server) nodeResource(n string) map[string]any {
	cores, mem, _ := s.nodeUsage(n)
	return map[string]any{
		"node": n, "id": "node/" + n, "type": "node", "status": "online", "level": "",
		"cpu": float64(cores) / 64, "maxcpu": 32,
		"mem": int64(mem) << 20, "maxmem": int64(128) * gib,
		"disk": int64(20) * gib, "maxdisk": int64(100) * gib, "uptime": int64(s.uptime(n).Seconds()),
		"ssl_fingerprint": "3E:7A:5C:C4:2F:9B:19:0D:8E:33:51:0A:6B:7F:C2:94:AF:10:DE:61:53:27:8B:0C:E4:49:A8:3F:71:12:5D:C6",
	}
}

func (s *Server) nodeStatus(_ *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cores, mem, _ := s.nodeUsage(c.node)
	return map[string]any{
		"cpu": float64(cores) / 64, "uptime": int64(s.uptime(c.node).Seconds()), "loadavg": []string{"0.50", "0.40", "0.30"},
		"memory":   map[string]any{"total": int64(128) * gib, "used": int64(mem) << 20, "free": int64(128)*gib - int64(mem)<<20},
		"rootfs":   map[string]any{"total": int64(100) * gib, "used": int64(20) * gib, "free": int64(80) * gib, "avail": int64(80) * gib},
		"cpuinfo":  map[string]any{"cpus": 32, "cores": 16, "sockets": 1, "model": "Simulated CPU", "mhz": "3000.000", "user_hz": 100},
		"kversion": "Linux 6.8.12-1-pve", "pveversion": "pve-manager/8.2.4/faa83925c9641325",
	}, nil
}

// vmSummary is the VM as /qemu and /status/current show it; the lock must
// be held. A running VM shows the configuration it started with, without
// its pending changes.
func vmSummary(st *vmState) map[string]any {
	name, cpus, maxmem, maxdisk := st.Name, st.Cores*st.Sockets, int64(st.MemoryMB)<<20, st.diskBytes
	if st.temp {
		// The clone's temporary configuration has no name, CPUs or disks.
		name, cpus, maxmem, maxdisk = "", 1, 512<<20, 0
	}
	if name == "" {
		name = fmt.Sprintf("VM %d", st.VMID)
	}
	m := map[string]any{
		"vmid": st.VMID, "name": name, "status": st.Status,
		"cpus": cpus, "maxmem": maxmem, "maxdisk": maxdisk,
		"mem": 0, "cpu": 0, "uptime": 0, "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
	}
	if st.Status == "running" {
		up := time.Since(st.started).Seconds()
		m["uptime"] = int(up)
		m["mem"] = int64(st.MemoryMB) << 19
		m["cpu"] = 0.03
		m["pid"] = 4000 + st.VMID
		m["netin"], m["netout"] = int64(up*12000), int64(up*3000)
		if l := st.load; l != nil {
			m["cpu"], m["mem"], m["disk"] = l.CPU, int64(l.Memory*float64(maxmem)), int64(l.Disk*float64(maxdisk))
		}
		m["diskread"], m["diskwrite"] = int64(up*50000)+300<<20, int64(up*20000)
	}
	if st.Lock != "" {
		m["lock"] = st.Lock
	}
	if len(st.Tags) > 0 && !st.temp {
		m["tags"] = strings.Join(st.Tags, ";")
	}
	if st.Template {
		m["template"] = 1
	}
	return m
}

func (s *Server) qemuList(_ *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, k := range slices.SortedFunc(maps.Keys(s.vms), func(a, b vmKey) int { return a.vmid - b.vmid }) {
		if k.node == c.node {
			out = append(out, vmSummary(s.vms[k]))
		}
	}
	return out, nil
}

// vm finds the call's VM; the lock must be held.
func (s *Server) vm(c *call) (*vmState, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	st, ok := s.vms[vmKey{c.node, c.vmid}]
	if !ok {
		return nil, serverError("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", c.node, c.vmid)
	}
	return st, nil
}

// onVM returns a handler that runs fn, under the lock, on the VM the path
// names.
func (s *Server) onVM(fn func(*vmState) any) handler {
	return func(_ *http.Request, c *call) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		st, err := s.vm(c)
		if err != nil {
			return nil, err
		}
		return fn(st), nil
	}
}

func statusCurrent(st *vmState) any {
	m := vmSummary(st)
	m["qmpstatus"] = st.Status
	if st.Paused {
		m["qmpstatus"] = "paused"
	}
	m["ha"] = map[string]any{"managed": 0}
	m["agent"] = 1
	if st.Status == "running" {
		m["running-machine"] = "pc-i440fx-8.1+pve0"
		m["running-qemu"] = "8.1.5"
	}
	return m
}

// lockCheck refuses a change to a VM whose configuration is locked, as
// PVE's check_lock does; the lock must be held.
func lockCheck(st *vmState) error {
	if st.Lock != "" {
		return serverError("VM is locked (%s)", st.Lock)
	}
	return nil
}

// takeFlock takes the VM's configuration file lock for a worker, shared
// or exclusive, and returns its release. When another worker holds it in
// a conflicting mode PVE waits 10 seconds and gives up; the simulator
// gives up at once. The lock must be held.
func (st *vmState) takeFlock(mode string) (func(), error) {
	if st.flock == "exclusive" || (st.flock == "shared" && mode == "exclusive") {
		return nil, serverError("can't lock file '/var/lock/qemu-server/lock-%d.conf' - got timeout", st.VMID)
	}
	st.flock = mode
	st.flocks++
	return func() {
		st.flocks--
		if st.flocks == 0 {
			st.flock = ""
		}
	}, nil
}

// setRunning records a power state change; the lock must be held.
func (st *vmState) setRunning(running bool) {
	if running && st.Status != "running" {
		st.applyPending()
		st.started = time.Now()
	}
	st.Status = map[bool]string{true: "running", false: "stopped"}[running]
	st.Paused = false
	st.history = append(st.history, stateChange{at: time.Now(), running: running})
}

func (s *Server) nextID(r *http.Request, _ *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := r.URL.Query().Get("vmid"); v != "" {
		id, err := strconv.Atoi(v)
		if err != nil || id < 100 {
			return nil, paramError("vmid", fmt.Sprintf("type check ('integer') failed - got '%s'", v))
		}
		if _, taken := s.findVM(id); taken {
			return nil, paramError("vmid", fmt.Sprintf("VM %d already exists", id))
		}
		return strconv.Itoa(id), nil
	}
	id := 100
	for {
		if _, taken := s.findVM(id); !taken {
			return strconv.Itoa(id), nil
		}
		id++
	}
}

// powerOps are the /status/{op} endpoints.
var powerOps = []string{"start", "stop", "shutdown", "reboot", "reset", "suspend", "resume"}

// powerParams are the parameters each power endpoint accepts.
var powerParams = map[string][]string{
	"start":    {"skiplock", "timeout", "machine", "migratedfrom", "migration_network", "migration_type", "stateuri", "targetstorage", "force-cpu"},
	"stop":     {"skiplock", "timeout", "keepActive", "overrule-shutdown", "migratedfrom"},
	"shutdown": {"skiplock", "timeout", "forceStop", "keepActive"},
	"reboot":   {"timeout"},
	"reset":    {"skiplock"},
	"suspend":  {"skiplock", "todisk", "statestorage"},
	"resume":   {"skiplock", "nocheck"},
}

// params reads a request's parameters from a JSON or form body, or from
// the query string of a DELETE, as pveproxy accepts them. JSON booleans
// become "1" and "0", as PVE's schema reads them.
func params(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	if r.Method == http.MethodDelete || r.Method == http.MethodGet {
		for k, v := range r.URL.Query() {
			out[k] = v[0]
		}
		return out, nil
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil && err.Error() != "EOF" {
			return nil, &apiError{Status: http.StatusBadRequest, Reason: "malformed JSON body: " + err.Error()}
		}
		for k, v := range m {
			switch v := v.(type) {
			case bool:
				out[k] = map[bool]string{true: "1", false: "0"}[v]
			case nil:
			default:
				out[k] = fmt.Sprint(v)
			}
		}
		return out, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, &apiError{Status: http.StatusBadRequest, Reason: err.Error()}
	}
	for k, v := range r.PostForm {
		out[k] = v[0]
	}
	return out, nil
}

func checkParams(p map[string]string, allowed []string, integers ...string) error {
	for k, v := range p {
		if !slices.Contains(allowed, k) {
			return paramError(k, "property is not defined in schema and the schema does not allow additional properties")
		}
		if slices.Contains(integers, k) {
			if _, err := strconv.Atoi(v); err != nil {
				return paramError(k, fmt.Sprintf("type check ('integer') failed - got '%s'", v))
			}
		}
	}
	return nil
}

// isTrue reads a PVE boolean parameter.
func isTrue(v string) bool { return v == "1" || v == "true" || v == "on" || v == "yes" }

// power returns the handler of one /status/{op} endpoint. Refusals that
// PVE makes before it forks a worker are errors here; the rest end the task.
func (s *Server) power(op string) handler {
	return func(r *http.Request, c *call) (any, error) {
		p, err := params(r)
		if err != nil {
			return nil, err
		}
		if err := checkParams(p, powerParams[op], "timeout"); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		st, err := s.vm(c)
		if err != nil {
			return nil, err
		}
		hibernated := st.Lock == "suspended"
		if st.Lock != "" && p["skiplock"] != "1" && !(hibernated && (op == "start" || op == "resume")) {
			return nil, serverError("VM is locked (%s)", st.Lock)
		}
		running := st.Status == "running"
		exit, dur, typ := c.taskError, s.cfg.TaskDuration, "qm"+op
		var effect func(*vmState)
		switch op {
		case "start":
			if st.Template {
				return nil, serverError("you can't start a vm if it's a template")
			}
			if running && exit == "" {
				exit = fmt.Sprintf("VM %d already running", c.vmid)
			}
			effect = func(v *vmState) { v.resumeFromDisk(); v.setRunning(true) }
		case "stop":
			effect = func(v *vmState) { v.setRunning(false) }
		case "resume":
			if hibernated {
				// PVE resumes a VM hibernated to disk by starting it.
				effect = func(v *vmState) { v.resumeFromDisk(); v.setRunning(true) }
				break
			}
			if !running {
				return nil, serverError("VM %d not running", c.vmid)
			}
			effect = func(v *vmState) { v.Paused = false }
		case "shutdown", "reboot", "reset", "suspend":
			if !running {
				return nil, serverError("VM %d not running", c.vmid)
			}
			switch op {
			case "shutdown", "reboot":
				if st.IgnoresShutdown && !st.Paused && exit == "" {
					timeout := 180 * time.Second
					if t, err := strconv.Atoi(p["timeout"]); err == nil {
						timeout = time.Duration(t) * time.Second
					}
					// The guest's timeout, compressed like every task.
					dur = min(timeout, 10*s.cfg.TaskDuration)
					exit = "VM quit/powerdown failed - got timeout"
				}
				if op == "shutdown" {
					effect = func(v *vmState) { v.setRunning(false) }
				} else {
					// A reboot is a shutdown and a start: pending changes apply.
					effect = func(v *vmState) { v.setRunning(false); v.setRunning(true) }
				}
			case "reset":
				effect = func(v *vmState) { v.Paused = false }
			case "suspend":
				if isTrue(p["todisk"]) {
					// Hibernate: the VM's state goes to a volume, the VM stops
					// and stays locked "suspended" until it is started or
					// resumed. PVE names this task qmsuspend, a pause qmpause.
					effect = func(v *vmState) {
						v.setRunning(false)
						v.Lock = "suspended"
						v.Config["vmstate"] = fmt.Sprintf("local-lvm:vm-%d-state-suspend-%s", v.VMID, time.Now().UTC().Format("2006-01-02"))
						v.Config["runningmachine"] = "pc-i440fx-8.1+pve0"
					}
				} else {
					typ = "qmpause"
					effect = func(v *vmState) { v.Paused = true }
				}
			}
		}
		if st.flock != "" && exit == "" {
			// Another worker (a clone, a backup) holds the configuration
			// lock; power workers take it after they fork, so the task
			// fails. Power tasks do not hold it against each other here.
			exit = fmt.Sprintf("can't lock file '/var/lock/qemu-server/lock-%d.conf' - got timeout", c.vmid)
		}
		t := s.startTask(c, typ, dur, exit, func() {
			if v, ok := s.vms[vmKey{c.node, c.vmid}]; ok {
				effect(v)
			}
		})
		return t.upid, nil
	}
}

// resumeFromDisk drops a hibernated VM's saved state as its start does;
// the lock must be held.
func (st *vmState) resumeFromDisk() {
	if st.Lock == "suspended" {
		st.Lock = ""
		delete(st.Config, "vmstate")
		delete(st.Config, "runningmachine")
	}
}
