package sim

import (
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
}

type vmState struct {
	VM
	started time.Time // when it last started running
}

// DemoVMs are the VMs `provisiond dev` starts with: a template and three
// guests in different power states.
func DemoVMs() []VM {
	return []VM{
		{Node: "pve1", VMID: 9000, Name: "debian-12-template", Status: "stopped", Cores: 1, MemoryMB: 1024, DiskGB: 10, Template: true},
		{Node: "pve1", VMID: 100, Name: "web-1", Status: "running", Cores: 2, MemoryMB: 2048, DiskGB: 40, Tags: []string{"demo"}},
		{Node: "pve1", VMID: 101, Name: "db-1", Status: "stopped", Cores: 4, MemoryMB: 8192, DiskGB: 80, Tags: []string{"demo"}},
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
	vm.MemoryMB = cmp0(vm.MemoryMB, 512)
	vm.DiskGB = cmp0(vm.DiskGB, 8)
	vm.Tags = slices.Clone(vm.Tags)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &vmState{VM: vm}
	if vm.Status == "running" {
		st.started = time.Now()
	}
	s.vms[vmKey{vm.Node, vm.VMID}] = st
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// VM returns a copy of the VM's current state.
func (s *Server) VM(node string, vmid int) (VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.vms[vmKey{node, vmid}]
	if !ok {
		return VM{}, false
	}
	vm := st.VM
	vm.Tags = slices.Clone(vm.Tags)
	return vm, true
}

// VMs returns every VM, ordered by VMID.
func (s *Server) VMs() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VM, 0, len(s.vms))
	for _, st := range s.vms {
		out = append(out, st.VM)
	}
	slices.SortFunc(out, func(a, b VM) int { return a.VMID - b.VMID })
	return out
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
			cores += vm.Cores
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
		cores, mem, _ := s.nodeUsage(n)
		out = append(out, map[string]any{
			"node": n, "id": "node/" + n, "type": "node", "status": "online", "level": "",
			"cpu": float64(cores) / 64, "maxcpu": 32,
			"mem": int64(mem) << 20, "maxmem": int64(128) * gib,
			"disk": int64(20) * gib, "maxdisk": int64(100) * gib, "uptime": 864000,
		})
	}
	return out, nil
}

func (s *Server) nodeStatus(_ *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cores, mem, _ := s.nodeUsage(c.node)
	return map[string]any{
		"cpu": float64(cores) / 64, "uptime": 864000, "loadavg": []string{"0.50", "0.40", "0.30"},
		"memory":   map[string]any{"total": int64(128) * gib, "used": int64(mem) << 20, "free": int64(128)*gib - int64(mem)<<20},
		"rootfs":   map[string]any{"total": int64(100) * gib, "used": int64(20) * gib, "free": int64(80) * gib, "avail": int64(80) * gib},
		"cpuinfo":  map[string]any{"cpus": 32, "cores": 16, "sockets": 1, "model": "Simulated CPU", "mhz": "3000.000", "user_hz": 100},
		"kversion": "Linux 6.8.12-1-pve", "pveversion": "pve-manager/8.2.4/faa83925c9641325",
	}, nil
}

// vmSummary is the VM as /qemu and /status/current show it; the lock must be held.
func vmSummary(st *vmState) map[string]any {
	m := map[string]any{
		"vmid": st.VMID, "name": st.Name, "status": st.Status,
		"cpus": st.Cores, "maxmem": int64(st.MemoryMB) << 20, "maxdisk": int64(st.DiskGB) * gib,
		"mem": 0, "cpu": 0, "uptime": 0, "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
	}
	if st.Status == "running" {
		m["uptime"] = int(time.Since(st.started).Seconds())
		m["mem"] = int64(st.MemoryMB) << 19
		m["cpu"] = 0.03
		m["pid"] = 4000 + st.VMID
	}
	if st.Lock != "" {
		m["lock"] = st.Lock
	}
	if len(st.Tags) > 0 {
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
	return m
}

func configGet(st *vmState) any {
	cfg := map[string]any{
		"name": st.Name, "cores": st.Cores, "sockets": 1, "memory": strconv.Itoa(st.MemoryMB),
		"scsi0":  fmt.Sprintf("local-lvm:vm-%d-disk-0,size=%dG", st.VMID, st.DiskGB),
		"net0":   fmt.Sprintf("virtio=BC:24:11:%02X:%02X:%02X,bridge=vmbr0", (st.VMID>>16)&0xff, (st.VMID>>8)&0xff, st.VMID&0xff),
		"boot":   "order=scsi0;net0",
		"ostype": "l26", "scsihw": "virtio-scsi-single", "agent": "1",
		"digest": fmt.Sprintf("%040x", st.VMID),
	}
	if len(st.Tags) > 0 {
		cfg["tags"] = strings.Join(st.Tags, ";")
	}
	if st.Template {
		cfg["template"] = 1
	}
	if st.Lock != "" {
		cfg["lock"] = st.Lock
	}
	return cfg
}

func (s *Server) nextID(*http.Request, *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := 100
	for {
		taken := false
		for k := range s.vms {
			if k.vmid == id {
				taken = true
				break
			}
		}
		if !taken {
			return strconv.Itoa(id), nil
		}
		id++
	}
}

// powerOps are the /status/{op} endpoints.
var powerOps = []string{"start", "stop", "shutdown", "reset", "suspend", "resume"}

// powerParams are the parameters each power endpoint accepts.
var powerParams = map[string][]string{
	"start":    {"skiplock", "timeout", "machine", "migratedfrom", "migration_network", "migration_type", "stateuri", "targetstorage", "force-cpu"},
	"stop":     {"skiplock", "timeout", "keepActive", "overrule-shutdown", "migratedfrom"},
	"shutdown": {"skiplock", "timeout", "forceStop", "keepActive"},
	"reset":    {"skiplock"},
	"suspend":  {"skiplock", "todisk", "statestorage"},
	"resume":   {"skiplock", "nocheck"},
}

// params reads a request's parameters from a JSON or form body, as pveproxy
// accepts both.
func params(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil && err.Error() != "EOF" {
			return nil, &apiError{Status: http.StatusBadRequest, Reason: "malformed JSON body: " + err.Error()}
		}
		for k, v := range m {
			out[k] = fmt.Sprint(v)
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
		if st.Lock != "" && p["skiplock"] != "1" {
			return nil, serverError("VM is locked (%s)", st.Lock)
		}
		running := st.Status == "running"
		exit, dur := c.taskError, s.cfg.TaskDuration
		var effect func(*vmState)
		switch op {
		case "start":
			if st.Template {
				return nil, serverError("you can't start a vm if it's a template")
			}
			if running && exit == "" {
				exit = fmt.Sprintf("VM %d already running", c.vmid)
			}
			effect = func(v *vmState) { v.Status, v.Paused, v.started = "running", false, time.Now() }
		case "stop":
			effect = func(v *vmState) { v.Status, v.Paused = "stopped", false }
		case "shutdown", "reset", "suspend", "resume":
			if !running {
				return nil, serverError("VM %d not running", c.vmid)
			}
			switch op {
			case "shutdown":
				if st.IgnoresShutdown && !st.Paused && exit == "" {
					timeout := 180 * time.Second
					if t, err := strconv.Atoi(p["timeout"]); err == nil {
						timeout = time.Duration(t) * time.Second
					}
					// The guest's timeout, compressed like every task.
					dur = min(timeout, 10*s.cfg.TaskDuration)
					exit = "VM quit/powerdown failed - got timeout"
				}
				effect = func(v *vmState) { v.Status, v.Paused = "stopped", false }
			case "reset":
				effect = func(v *vmState) { v.Paused = false }
			case "suspend":
				effect = func(v *vmState) { v.Paused = true }
			case "resume":
				effect = func(v *vmState) { v.Paused = false }
			}
		}
		t := s.startTask(c.node, "qm"+op, c.vmid, dur, exit, func() {
			if v, ok := s.vms[vmKey{c.node, c.vmid}]; ok {
				effect(v)
			}
		})
		return t.upid, nil
	}
}
