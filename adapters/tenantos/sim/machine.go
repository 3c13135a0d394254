package sim

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Machine is a simulated bare-metal server as the panel knows it.
type Machine struct {
	ID          int    `json:"id"`
	ServerName  string `json:"servername"`
	Hostname    string `json:"hostname"`
	UserID      int    `json:"user_id"`
	OS          string `json:"os"`
	Description string `json:"description"`
	// ServerType is "auto", "dedicated" or "vm"; default "auto".
	ServerType string   `json:"servertype"`
	Tags       []string `json:"tags"`
	// SuspendedUserIDs are the users the server is suspended for.
	SuspendedUserIDs []int `json:"suspendedUserIds"`
	// Power is "online" or "offline"; default "online".
	Power string `json:"power"`
	// Rescue is set while the server runs the rescue system.
	Rescue   bool           `json:"rescue"`
	Hardware Hardware       `json:"hardware"`
	IPs      []IPAssignment `json:"ips"`
}

// Hardware is the inventory summary shown as detailedHardwareInformation.
type Hardware struct {
	Mainboard     string `json:"mainboard"`
	CPUModel      string `json:"cpuModel"`
	CPUMHz        int    `json:"cpuMhz"`
	CPUCores      int    `json:"cpuCores"`
	CPUThreads    int    `json:"cpuThreads"`
	MemoryModel   string `json:"memoryModel"`
	MemoryMB      int    `json:"memoryMb"`
	MemoryModules int    `json:"memoryModules"`
	Disks         []Disk `json:"disks"`
}

// Disk is one drive of a server.
type Disk struct {
	Model   string `json:"model"`
	SizeMiB int    `json:"sizeMib"`
}

// IPAssignment is an address assigned to a server, with its subnet.
type IPAssignment struct {
	ID          int    `json:"id"`
	IP          string `json:"ip"`
	CIDR        int    `json:"cidr"`
	Gateway     string `json:"gateway"`
	Primary     bool   `json:"primary"`
	Description string `json:"description,omitempty"`
}

// machine is a server with what the simulator tracks beyond Machine.
type machine struct {
	Machine
	updated time.Time
	// install is the last reinstallation, rescue boot or wipe, kept after
	// it ends for getInstallStatus.
	install *install
	// pending is a power change that has not happened yet.
	pending *powerChange
}

// DemoServers are the servers `provisiond dev` starts with: two free ones
// tagged "For Rent", one rented, one suspended.
func DemoServers() []Machine {
	ryzen := Hardware{Mainboard: "MAG X570 TOMAHAWK WIFI (MS-7C84)", CPUModel: "AMD Ryzen 9 3900XT", CPUMHz: 2200, CPUCores: 12, CPUThreads: 24,
		MemoryModel: "CMW32GX4M2C3200C16", MemoryMB: 65536, MemoryModules: 4,
		Disks: []Disk{{"Samsung SSD 860 EVO 500GB", 476940}, {"WDS100T3X0C-00SJG0", 953869}}}
	xeon := Hardware{Mainboard: "X11SCL-F", CPUModel: "Intel(R) Xeon(R) E-2288G CPU @ 3.70GHz", CPUMHz: 3700, CPUCores: 8, CPUThreads: 16,
		MemoryModel: "M391A4G43AB1-CVF", MemoryMB: 32768, MemoryModules: 2,
		Disks: []Disk{{"SAMSUNG MZ7LH480HAHQ", 457862}, {"SAMSUNG MZ7LH480HAHQ", 457862}}}
	return []Machine{
		{ID: 1, ServerName: "srv-001", Hostname: "srv-001.example.net", UserID: 1, OS: "Debian 12", Tags: []string{"For Rent"}, Power: "online",
			Hardware: ryzen, IPs: []IPAssignment{{IP: "10.10.10.30", CIDR: 24, Gateway: "10.10.10.1", Primary: true}}},
		{ID: 2, ServerName: "srv-002", Hostname: "web.customer.example", UserID: 8, OS: "Ubuntu 24.04", Tags: []string{"Clients"}, Power: "online",
			Hardware: xeon, IPs: []IPAssignment{
				{IP: "10.10.10.31", CIDR: 24, Gateway: "10.10.10.1", Primary: true},
				{IP: "10.10.10.32", CIDR: 24, Gateway: "10.10.10.1"},
				{IP: "2001:db8:10::2", CIDR: 64, Gateway: "2001:db8:10::1"}}},
		{ID: 3, ServerName: "srv-003", Hostname: "srv-003.example.net", UserID: 1, Tags: []string{"For Rent"}, Power: "offline",
			Hardware: xeon, IPs: []IPAssignment{{IP: "10.10.10.33", CIDR: 24, Gateway: "10.10.10.1", Primary: true}}},
		{ID: 4, ServerName: "srv-004", Hostname: "db.customer.example", UserID: 9, OS: "Rocky Linux 9", Tags: []string{"Clients"}, Power: "offline",
			SuspendedUserIDs: []int{9}, Hardware: ryzen, IPs: []IPAssignment{{IP: "10.10.10.34", CIDR: 24, Gateway: "10.10.10.1", Primary: true}}},
	}
}

// AddServer adds or replaces a server, forgetting any install or power
// change in progress. Missing names, power state and hardware get defaults.
func (s *Server) AddServer(m Machine) {
	if m.ServerName == "" {
		m.ServerName = fmt.Sprintf("server-%03d", m.ID)
	}
	if m.Hostname == "" {
		m.Hostname = m.ServerName
	}
	if m.UserID == 0 {
		m.UserID = 1
	}
	if m.Power == "" {
		m.Power = "online"
	}
	if m.ServerType == "" {
		m.ServerType = "auto"
	}
	if m.Hardware.CPUModel == "" {
		m.Hardware = Hardware{Mainboard: "Simulated Board", CPUModel: "Simulated CPU", CPUMHz: 3000, CPUCores: 8, CPUThreads: 16,
			MemoryModel: "Simulated DIMM", MemoryMB: 32768, MemoryModules: 2, Disks: []Disk{{"Simulated SSD", 457862}}}
	}
	m = m.clone()
	for i := range m.IPs {
		if m.IPs[i].ID == 0 {
			m.IPs[i].ID = m.ID*100 + i + 1
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.machines[m.ID] = &machine{Machine: m, updated: time.Now()}
}

func (m Machine) clone() Machine {
	m.Tags = slices.Clone(m.Tags)
	m.SuspendedUserIDs = slices.Clone(m.SuspendedUserIDs)
	m.Hardware.Disks = slices.Clone(m.Hardware.Disks)
	m.IPs = slices.Clone(m.IPs)
	return m
}

// Server returns a copy of the server's current state.
func (s *Server) Server(id int) (Machine, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.machines[id]
	if !ok {
		return Machine{}, false
	}
	s.settle(m, time.Now())
	return m.Machine.clone(), true
}

// Servers returns every server, ordered by id.
func (s *Server) Servers() []Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]Machine, 0, len(s.machines))
	for _, id := range slices.Sorted(maps.Keys(s.machines)) {
		s.settle(s.machines[id], now)
		out = append(out, s.machines[id].Machine.clone())
	}
	return out
}

// CountInstalls counts the reinstallations, rescue boots and wipes actually
// started on a server, however many calls asked for one.
func (s *Server) CountInstalls(id int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.installs[id]
}

// request is what a handler of /api/servers/{id}/... works with, under the
// lock, the server's state settled at now.
type request struct {
	r   *http.Request
	c   *call
	in  map[string]any
	m   *machine
	now time.Time
}

// onServer returns a handler that finds the path's server, 404 as Laravel's
// route model binding when there is none, and runs fn on it under the lock.
func (s *Server) onServer(fn func(*request) (any, error)) handler {
	return func(r *http.Request, c *call) (any, error) {
		in := input(r) // read before locking: a slow body must not stall others
		s.mu.Lock()
		defer s.mu.Unlock()
		m, ok := s.machines[c.id]
		if !ok {
			return nil, &apiError{Status: http.StatusNotFound,
				Message: fmt.Sprintf(`No query results for model [App\Models\Server] %s`, r.PathValue("id"))}
		}
		now := time.Now()
		s.settle(m, now)
		return fn(&request{r: r, c: c, in: in, m: m, now: now})
	}
}

const laravelTime = "2006-01-02T15:04:05.000000Z"

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// view is the server as GET /api/servers/{id} shows it; state settled.
func (m *machine) view(now time.Time) map[string]any {
	kind, running := "", m.install.running(now)
	if running {
		kind = m.install.profile.Kind
	}
	primary, ips := "", make([]map[string]any, 0, len(m.IPs))
	for _, a := range m.IPs {
		if a.Primary {
			primary = a.IP
		}
		v := a.view(m.updated)
		delete(v, "id")
		delete(v, "description")
		ips = append(ips, v)
	}
	return map[string]any{
		"id": m.ID, "hostname": m.Hostname, "servername": m.ServerName, "user_id": m.UserID,
		"os": m.OS, "servertype": m.ServerType, "description": m.Description,
		"tags": nonNil(m.Tags), "suspendedUserIds": nonNil(m.SuspendedUserIDs), "isSuspended": flag(len(m.SuspendedUserIDs) > 0),
		"primaryip": primary, "reinstallationprovider": "pxe",
		"powerprovider":         map[string]any{"type": "ipmi", "supportedFeatures": powerMethods},
		"consoleprovider":       map[string]any{"type": "ipmi", "supportedConsoleMode": "standard"},
		"owner_realname":        fmt.Sprintf("User %d", m.UserID),
		"reinstallationRunning": flag(kind == KindOS), "diskwipeRunning": flag(kind == KindWipe),
		"rescueBootRunning": flag(kind == KindRescue || m.Rescue), "hardwarecollectRunning": 0, "passwordResetRunning": 0,
		"detailedHardwareInformation": m.Hardware.view(),
		"typeOfServer":                "dedicated", "cachedPowerstatus": m.Power, "backendDeletable": 0, "isExternalServer": 0,
		"postReinstallationActionAvailable": "",
		"ipassignments":                     ips,
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (h Hardware) view() map[string]any {
	mem := make([]map[string]any, 0, h.MemoryModules)
	for range h.MemoryModules {
		mem = append(mem, map[string]any{"model": h.MemoryModel, "size": strconv.Itoa(h.MemoryMB / h.MemoryModules)})
	}
	disks, total, diskModel := make([]map[string]any, 0, len(h.Disks)), 0, "multiple"
	for _, d := range h.Disks {
		disks = append(disks, map[string]any{"model": d.Model, "size": strconv.Itoa(d.SizeMiB)})
		total += d.SizeMiB
	}
	if len(h.Disks) == 1 {
		diskModel = h.Disks[0].Model
	}
	return map[string]any{
		"mainboard": map[string]any{"model": h.Mainboard, "value": "1.0", "count": 1, "valueType": "text",
			"details": []map[string]any{{"model": h.Mainboard, "size": "1.0"}}},
		"memory": map[string]any{"model": h.MemoryModel, "value": h.MemoryMB, "count": h.MemoryModules, "valueType": "mb", "details": mem},
		"cpu": map[string]any{"model": h.CPUModel, "value": strconv.Itoa(h.CPUMHz), "count": 1, "valueType": "MHz",
			"cores": strconv.Itoa(h.CPUCores), "threads": strconv.Itoa(h.CPUThreads)},
		"disk": map[string]any{"model": diskModel, "value": total, "count": len(h.Disks), "valueType": "mb", "details": disks},
	}
}

// view is the assignment as GET /api/servers/{id}/ipassignments shows it.
func (a IPAssignment) view(updated time.Time) map[string]any {
	sub := map[string]any{"cidr": a.CIDR, "gw": a.Gateway, "type": "v4", "netmask": "", "subnet": "",
		"rdnsAvailable": 1, "vlanAutomationAvailable": false, "subnetOwnedByUser": true, "rootSubnetId": nil, "isExternalProvider": 0}
	addr, err := netip.ParseAddr(a.IP)
	if err == nil {
		if p, err := addr.Prefix(a.CIDR); err == nil {
			sub["subnet"] = p.Addr().String()
		}
		if addr.Is6() {
			sub["type"] = "v6"
		} else {
			mask := uint32(0xffffffff) << (32 - a.CIDR)
			sub["netmask"] = netip.AddrFrom4([4]byte{byte(mask >> 24), byte(mask >> 16), byte(mask >> 8), byte(mask)}).String()
		}
	}
	var description any
	if a.Description != "" {
		description = a.Description
	}
	return map[string]any{
		"id": a.ID, "updated_at": updated.UTC().Format(laravelTime), "ip": a.IP, "primary_ip": flag(a.Primary),
		"description":       description,
		"ipAttributes":      map[string]any{"isIpv4": flag(err == nil && addr.Is4()), "isIpv6": flag(err == nil && addr.Is6()), "isSubnet": 0},
		"subnetinformation": sub,
	}
}

func (s *Server) listServers(*http.Request, *call) (any, error) {
	return s.serverViews(nil), nil
}

// serverViews shows the servers that have every tag, ordered by id.
func (s *Server) serverViews(tags []string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.machines)) {
		m := s.machines[id]
		if !containsAll(m.Tags, tags) {
			continue
		}
		s.settle(m, now)
		out = append(out, m.view(now))
	}
	return out
}

func containsAll(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// serversByTags answers POST /api/servers/getByTags: servers owning all of
// the tags (AND, not OR).
func (s *Server) serversByTags(r *http.Request, _ *call) (any, error) {
	v := newValidator(input(r))
	var tags []string
	if v.required("tags") {
		tags, _ = v.stringList("tags")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return s.serverViews(tags), nil
}

func (s *Server) getServer(q *request) (any, error) { return q.m.view(q.now), nil }

func (s *Server) ipAssignments(q *request) (any, error) {
	out := make([]map[string]any, 0, len(q.m.IPs))
	for _, a := range q.m.IPs {
		out = append(out, a.view(q.m.updated))
	}
	return out, nil
}

// updateServer answers PUT /api/servers/{id}. suspendUserIds suspends the
// server for those users ([] lifts it); suspendPowerAction is carried out
// with it. Nothing changes unless every field is valid.
func (s *Server) updateServer(q *request) (any, error) {
	v := newValidator(q.in)
	hostname, setHostname := v.str("hostname", 255)
	servername, setServername := v.str("servername", 255)
	userID, setUser := v.integer("user_id")
	description, setDescription := v.str("description", 65535)
	tags, setTags := v.stringList("tags")
	osName, setOS := v.str("os", 255)
	serverType, setType := v.oneOf("servertype", "auto", "dedicated", "vm")
	suspend, setSuspend := v.intList("suspendUserIds")
	powerAction, _ := v.oneOf("suspendPowerAction", "none", "setPowerOff", "setPowerOn")
	v.oneOf("suspendNetworkPortAction", "none", "disable", "enable") // no switch ports are simulated
	if err := v.err(); err != nil {
		return nil, err
	}
	m := q.m
	set(&m.Hostname, hostname, setHostname)
	set(&m.ServerName, servername, setServername)
	set(&m.UserID, userID, setUser)
	set(&m.Description, description, setDescription)
	set(&m.Tags, tags, setTags)
	set(&m.OS, osName, setOS)
	set(&m.ServerType, serverType, setType)
	set(&m.SuspendedUserIDs, suspend, setSuspend)
	if setSuspend && powerAction != "" && powerAction != "none" {
		s.schedulePower(m, powerAction, q.c.taskError, q.now)
	}
	m.updated = q.now
	return m.view(q.now), nil
}

func set[T any](dst *T, v T, ok bool) {
	if ok {
		*dst = v
	}
}
