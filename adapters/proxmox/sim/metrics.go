package sim

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

// resources is GET /cluster/resources, optionally filtered by type (vm,
// storage or node). VMs carry their tags as PVE lists them, one string
// separated by ';', so that a VM can be found by a tag.
func (s *Server) resources(r *http.Request, _ *call) (any, error) {
	typ := r.URL.Query().Get("type")
	if typ != "" && !slices.Contains([]string{"vm", "storage", "node", "sdn"}, typ) {
		return nil, paramError("type", fmt.Sprintf("value '%s' does not have a value in the enumeration 'vm, storage, node, sdn'", typ))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	if typ == "" || typ == "vm" {
		for _, k := range slices.SortedFunc(maps.Keys(s.vms), func(a, b vmKey) int { return a.vmid - b.vmid }) {
			st := s.vms[k]
			m := vmSummary(st)
			delete(m, "cpus")
			delete(m, "pid")
			m["id"] = fmt.Sprintf("qemu/%d", k.vmid)
			m["type"] = "qemu"
			m["node"] = k.node
			m["maxcpu"] = st.Cores * st.Sockets
			if st.temp {
				m["maxcpu"] = 1
			}
			m["template"] = map[bool]int{true: 1, false: 0}[st.Template]
			if st.Pool != "" {
				m["pool"] = st.Pool
			}
			out = append(out, m)
		}
	}
	if typ == "" || typ == "node" {
		for _, n := range s.cfg.Nodes {
			m := s.nodeResource(n)
			m["cgroup-mode"] = 2
			delete(m, "ssl_fingerprint")
			out = append(out, m)
		}
	}
	if typ == "" || typ == "storage" {
		for _, n := range s.cfg.Nodes {
			for _, st := range s.storages[n] {
				used := s.usage(n, st)
				out = append(out, map[string]any{
					"id": "storage/" + n + "/" + st.id, "type": "storage", "storage": st.id, "node": n,
					"status": "available", "content": st.content, "plugintype": st.typ, "shared": 0,
					"disk": used, "maxdisk": st.total,
				})
			}
		}
	}
	return out, nil
}

// clusterStatus is GET /cluster/status: the cluster and its nodes, all
// online and quorate; the first node is the one answering.
func (s *Server) clusterStatus(*http.Request, *call) (any, error) {
	out := []map[string]any{{"type": "cluster", "id": "cluster", "name": "sim-cluster", "version": len(s.cfg.Nodes) + 1,
		"nodes": len(s.cfg.Nodes), "quorate": 1}}
	for i, n := range s.cfg.Nodes {
		out = append(out, map[string]any{"type": "node", "id": "node/" + n, "name": n, "nodeid": i + 1,
			"ip": fmt.Sprintf("192.0.2.%d", 11+i), "online": 1, "local": map[bool]int{true: 1, false: 0}[i == 0], "level": ""})
	}
	return out, nil
}

// rrdSteps are the resolutions of PVE 8's RRD archives: 70 rows each.
var rrdSteps = map[string]int64{"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800}

// rrdData is GET /qemu/{vmid}/rrddata: 70 points of the timeframe's step.
// A point in which the VM did not run has only time, maxcpu, maxmem,
// maxdisk and disk, as PVE leaves the rest undefined (and its JSON leaves
// them out) for a stopped guest. Values are plausible and repeatable:
// the same VM, time and function give the same numbers.
func (s *Server) rrdData(r *http.Request, c *call) (any, error) {
	p, _ := params(r)
	if err := checkParams(p, []string{"timeframe", "cf"}); err != nil {
		return nil, err
	}
	step, ok := rrdSteps[p["timeframe"]]
	if p["timeframe"] == "" {
		return nil, paramError("timeframe", "property is missing and it is not optional")
	}
	if !ok {
		return nil, paramError("timeframe", fmt.Sprintf("value '%s' does not have a value in the enumeration 'hour, day, week, month, year'", p["timeframe"]))
	}
	cf := p["cf"]
	if cf == "" {
		cf = "AVERAGE"
	}
	if cf != "AVERAGE" && cf != "MAX" {
		return nil, paramError("cf", fmt.Sprintf("value '%s' does not have a value in the enumeration 'AVERAGE, MAX'", cf))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	end := time.Now().Unix() / step * step
	out := make([]map[string]any, 0, 70)
	maxcpu, maxmem := st.Cores*st.Sockets, int64(st.MemoryMB)<<20
	for i := int64(69); i >= 0; i-- {
		t := end - i*step
		pt := map[string]any{"time": t, "maxcpu": maxcpu, "maxmem": maxmem, "maxdisk": st.diskBytes, "disk": 0}
		if st.runningAt(time.Unix(t, 0)) {
			n := noise(st.VMID, t, cf)
			peak := 1.0
			if cf == "MAX" {
				peak = 1.6
			}
			cpu := math.Min(1, (0.04+0.06*math.Sin(float64(t)/5400)+0.05*n)*peak)
			if cpu < 0.001 {
				cpu = 0.001
			}
			pt["cpu"] = cpu
			pt["mem"] = math.Min(float64(maxmem), float64(maxmem)*(0.35+0.1*n)*peak)
			pt["netin"] = (2000 + 18000*n) * peak
			pt["netout"] = (800 + 6000*n) * peak
			pt["diskread"] = (1000 + 40000*noise(st.VMID+1, t, cf)) * peak
			pt["diskwrite"] = (3000 + 25000*noise(st.VMID+2, t, cf)) * peak
		}
		out = append(out, pt)
	}
	return out, nil
}

// runningAt reports whether the VM ran at t by its power history; the
// lock must be held.
func (st *vmState) runningAt(t time.Time) bool {
	running := false
	for _, h := range st.history {
		if h.at.After(t) {
			break
		}
		running = h.running
	}
	return running
}

// noise is a repeatable value in [0, 1) for a VM, a time and a function.
func noise(vmid int, t int64, cf string) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/%s", vmid, t, strings.ToUpper(cf))
	return float64(h.Sum64()%10000) / 10000
}
