package tenantos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/adapters/tenantos"
	"github.com/hostfleet/provisiond/adapters/tenantos/sim"
)

const (
	apiKey       = "tenantos-test-key-0123456789abcdef"
	rootPassword = "Root-Pa55word-never-shown"
	taskTime     = 20 * time.Millisecond
	installTime  = 140 * time.Millisecond // 20ms for each of the 7 OS phases
)

// panel is a simulator with the demo servers behind a client: 1 (online,
// "For Rent"), 2 (online, three addresses), 3 (offline, "For Rent") and 4
// (offline, suspended).
type panel struct {
	sim *sim.Server
	url string
	c   *tenantos.Client
}

func newPanel(t *testing.T, opts ...func(*sim.Config)) *panel {
	t.Helper()
	cfg := sim.Config{APIKeys: []string{apiKey}, TaskDuration: taskTime, InstallDuration: installTime, Seed: 1}
	for _, o := range opts {
		o(&cfg)
	}
	s := sim.New(cfg)
	for _, m := range sim.DemoServers() {
		s.AddServer(m)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	p := &panel{sim: s, url: ts.URL}
	p.c = p.client(t, nil)
	return p
}

// client returns a client of the panel with the test key, changed by mod.
func (p *panel) client(t *testing.T, mod func(*tenantos.Config)) *tenantos.Client {
	t.Helper()
	cfg := tenantos.Config{URL: p.url, APIKey: apiKey, RequestTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := tenantos.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// machine reads a server from the simulator.
func (p *panel) machine(t *testing.T, id int) sim.Machine {
	t.Helper()
	m, ok := p.sim.Server(id)
	if !ok {
		t.Fatalf("server %d is gone", id)
	}
	return m
}

func ids(servers []tenantos.Server) []int {
	out := []int{}
	for _, s := range servers {
		out = append(out, s.ID)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestServersAreReadWithTheirDetails(t *testing.T) {
	ctx := context.Background()
	p := newPanel(t)
	all, err := p.c.Servers(ctx)
	if err != nil || !slices.Equal(ids(all), []int{1, 2, 3, 4}) {
		t.Fatalf("Servers = %v, %v; want 1 to 4", ids(all), err)
	}
	s, err := p.c.Server(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerName != "srv-002" || s.Hostname != "web.customer.example" || s.UserID != 8 || s.OS != "Ubuntu 24.04" ||
		!slices.Equal(s.Tags, []string{"Clients"}) || s.Suspended || s.PrimaryIP != "10.10.10.31" || s.Power != "online" ||
		s.ReinstallationRunning || s.DiskWipeRunning || s.RescueBootRunning {
		t.Errorf("server 2 = %+v", s)
	}
	want := tenantos.Hardware{Mainboard: "X11SCL-F", CPUModel: "Intel(R) Xeon(R) E-2288G CPU @ 3.70GHz", CPUMHz: 3700, CPUCores: 8,
		CPUThreads: 16, MemoryMB: 32768, MemoryModules: 2,
		Disks: []tenantos.Disk{{Model: "SAMSUNG MZ7LH480HAHQ", SizeMiB: 457862}, {Model: "SAMSUNG MZ7LH480HAHQ", SizeMiB: 457862}}}
	if h := s.Hardware; h.Mainboard != want.Mainboard || h.CPUModel != want.CPUModel || h.CPUMHz != want.CPUMHz ||
		h.CPUCores != want.CPUCores || h.CPUThreads != want.CPUThreads || h.MemoryMB != want.MemoryMB ||
		h.MemoryModules != want.MemoryModules || !slices.Equal(h.Disks, want.Disks) {
		t.Errorf("hardware = %+v, want %+v", h, want)
	}
	if len(s.IPs) != 3 || s.IPs[0] != (tenantos.IPAssignment{IP: "10.10.10.31", CIDR: 24, Gateway: "10.10.10.1", Primary: true}) ||
		!s.IPs[2].IPv6 || s.IPs[2].CIDR != 64 {
		t.Errorf("IPs = %+v", s.IPs)
	}
	suspended, err := p.c.Server(ctx, 4)
	if err != nil || !suspended.Suspended || !slices.Equal(suspended.SuspendedUserIDs, []int{9}) || suspended.Power != "offline" {
		t.Errorf("server 4 = %+v, %v; want suspended for 9 and offline", suspended, err)
	}
}

func TestServersByTagsNeedsAllTags(t *testing.T) {
	p := newPanel(t)
	tests := []struct {
		tags []string
		want []int
	}{
		{[]string{"For Rent"}, []int{1, 3}},
		{[]string{"Clients"}, []int{2, 4}},
		{[]string{"For Rent", "Clients"}, []int{}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.tags, "+"), func(t *testing.T) {
			got, err := p.c.ServersByTags(context.Background(), tt.tags)
			if err != nil || !slices.Equal(ids(got), tt.want) {
				t.Errorf("ServersByTags = %v, %v; want %v", ids(got), err, tt.want)
			}
		})
	}
}

func TestUpdateServerChangesOnlyWhatIsSet(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		u     tenantos.ServerUpdate
		check func(s tenantos.Server) bool
	}{
		{"hostname", tenantos.ServerUpdate{Hostname: ptr("new.example.org")},
			func(s tenantos.Server) bool {
				return s.Hostname == "new.example.org" && s.ServerName == "srv-002" && s.UserID == 8 && slices.Equal(s.Tags, []string{"Clients"})
			}},
		{"owner, name, description and tags", tenantos.ServerUpdate{UserID: ptr(12), ServerName: ptr("rack-7"),
			Description: ptr("moved"), Tags: &[]string{"Clients", "VIP"}},
			func(s tenantos.Server) bool {
				return s.UserID == 12 && s.ServerName == "rack-7" && s.Description == "moved" && slices.Equal(s.Tags, []string{"Clients", "VIP"})
			}},
		{"tags cleared by a nil list", tenantos.ServerUpdate{Tags: new([]string)},
			func(s tenantos.Server) bool { return len(s.Tags) == 0 }},
		{"suspend for the owner", tenantos.ServerUpdate{SuspendUserIDs: &[]int{8}, SuspendPowerAction: "none"},
			func(s tenantos.Server) bool { return s.Suspended && slices.Equal(s.SuspendedUserIDs, []int{8}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			got, err := p.c.UpdateServer(ctx, 2, tt.u)
			if err != nil || !tt.check(got) {
				t.Errorf("UpdateServer = %+v, %v", got, err)
			}
			if again, err := p.c.Server(ctx, 2); err != nil || !tt.check(again) {
				t.Errorf("afterwards %+v, %v", again, err)
			}
		})
	}
}

func TestSuspensionWithPowerOffAndLift(t *testing.T) {
	ctx := context.Background()
	p := newPanel(t)
	if _, err := p.c.UpdateServer(ctx, 2, tenantos.ServerUpdate{SuspendUserIDs: &[]int{8}, SuspendPowerAction: "setPowerOff"}); err != nil {
		t.Fatal(err)
	}
	adaptertest.Eventually(t, "power off after suspension", func() bool {
		st, err := p.c.PowerStatus(ctx, 2)
		return err == nil && st == "offline"
	})
	s, err := p.c.UpdateServer(ctx, 2, tenantos.ServerUpdate{SuspendUserIDs: new([]int)})
	if err != nil || s.Suspended || len(p.machine(t, 2).SuspendedUserIDs) != 0 {
		t.Errorf("after lifting: %+v, %v", s, err)
	}
}

func TestIPAssignmentsAreListedAddedAndDeleted(t *testing.T) {
	ctx := context.Background()
	p := newPanel(t)
	list, err := p.c.IPAssignments(ctx, 2)
	if err != nil || len(list) != 3 {
		t.Fatalf("IPAssignments = %+v, %v", list, err)
	}
	if list[0] != (tenantos.IPAssignment{ID: 201, IP: "10.10.10.31", CIDR: 24, Gateway: "10.10.10.1", Primary: true}) ||
		list[2] != (tenantos.IPAssignment{ID: 203, IP: "2001:db8:10::2", CIDR: 64, Gateway: "2001:db8:10::1", IPv6: true}) {
		t.Errorf("assignments = %+v", list)
	}
	tests := []struct {
		name string
		in   tenantos.NewIPAssignment
		want tenantos.IPAssignment // ID not compared
	}{
		{"v4 subnet", tenantos.NewIPAssignment{IP: "10.10.20.9", CIDR: 29, Gateway: "10.10.20.14", Description: "failover"},
			tenantos.IPAssignment{IP: "10.10.20.9", CIDR: 29, Gateway: "10.10.20.14", Description: "failover"}},
		{"v6 single address", tenantos.NewIPAssignment{IP: "2001:db8:20::5"},
			tenantos.IPAssignment{IP: "2001:db8:20::5", CIDR: 128, IPv6: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := p.c.AddIPAssignment(ctx, 2, tt.in)
			got := a
			got.ID = 0
			if err != nil || a.ID == 0 || got != tt.want {
				t.Fatalf("AddIPAssignment = %+v, %v; want %+v with an id", a, err, tt.want)
			}
			if err := p.c.DeleteIPAssignment(ctx, 2, a.ID); err != nil {
				t.Fatal(err)
			}
			if ips := p.machine(t, 2).IPs; len(ips) != 3 {
				t.Errorf("after delete the server has %+v", ips)
			}
			if err := p.c.DeleteIPAssignment(ctx, 2, a.ID); !errors.Is(err, tenantos.ErrNotFound) || !failure.IsPermanent(err) {
				t.Errorf("second delete: %v, want a permanent ErrNotFound", err)
			}
		})
	}
}

func TestPowerActionsChangeTheState(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		method string
		id     int
		want   string
	}{
		{tenantos.PowerOn, 3, "online"},
		{tenantos.PowerOff, 1, "offline"},
		{tenantos.PowerReset, 1, "online"},
		{tenantos.PowerCycle, 1, "online"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			p := newPanel(t)
			if err := p.c.Power(ctx, tt.id, tt.method); err != nil {
				t.Fatal(err)
			}
			adaptertest.Eventually(t, "power "+tt.want, func() bool {
				st, err := p.c.PowerStatus(ctx, tt.id)
				s, serr := p.c.Server(ctx, tt.id)
				return err == nil && serr == nil && st == tt.want && s.Power == tt.want
			})
			if n := p.sim.CountCalls("power."+tt.method, fmt.Sprint(tt.id)); n != 1 {
				t.Errorf("%d calls of %s, want 1", n, tt.method)
			}
		})
	}
}

func TestProfilesListOSRescueAndLayouts(t *testing.T) {
	p := newPanel(t)
	profiles, err := p.c.Profiles(context.Background(), 1)
	if err != nil || len(profiles) != 5 {
		t.Fatalf("Profiles = %+v, %v", profiles, err)
	}
	debian := profiles[0]
	if debian.ID != 1 || debian.Name != "Debian 12" || debian.Group != "Debian" || debian.Rescue || debian.DefaultDiskLayout != 2 ||
		len(debian.DiskLayouts) != 3 || debian.DiskLayouts[1] != (tenantos.DiskLayout{ID: 4, Name: "RAID 1"}) ||
		!slices.Equal(debian.Scripts, []tenantos.Script{{ID: 2, Name: "Install Docker"}}) ||
		!debian.SetRootPassword || !debian.AllowSSHKeys || !debian.AllowHostname {
		t.Errorf("Debian = %+v", debian)
	}
	if rescue := profiles[3]; rescue.ID != 10 || !rescue.Rescue || rescue.AllowHostname {
		t.Errorf("rescue = %+v", rescue)
	}
	if wipe := profiles[4]; wipe.ID != 20 || wipe.SetRootPassword {
		t.Errorf("wipe = %+v", wipe)
	}
}

// bodyRecorder is a Transport that keeps the body of every request.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies map[string]string // by path and query
}

func (b *bodyRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	b.mu.Lock()
	b.bodies[r.URL.RequestURI()] = string(body)
	b.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (b *bodyRecorder) sent(uri string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.bodies[uri]
	return ok
}

func (b *bodyRecorder) body(uri string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bodies[uri]
}

func TestReinstallationSendsTheSeedsNamesAndOmitsZeroValues(t *testing.T) {
	tests := []struct {
		name string
		r    tenantos.Reinstallation
		want map[string]any
	}{
		{"everything", tenantos.Reinstallation{ProfileID: 1, DiskLayoutID: 4, UserProvidedDiskLayout: "part / ext4", RootPassword: rootPassword,
			Hostname: "fresh.example.net", SSHKeys: []string{"ssh-ed25519 AAAA test"}, RunScripts: []int{2},
			ConfigureAllIPv4: ptr(true), ConfigureAllIPv6: ptr(false), InstallPowerAction: "restartOnly"},
			map[string]any{"profileId": 1.0, "disklayoutId": 4.0, "userprovidedDiskLayout": "part / ext4", "rootpassword": rootPassword,
				"hostname": "fresh.example.net", "sshkeys": []any{"ssh-ed25519 AAAA test"}, "runScripts": []any{2.0},
				"configure_all_ipvfour": true, "configure_all_ipvsix": false, "installPowerAction": "restartOnly"}},
		{"a wipe: the profile alone", tenantos.Reinstallation{ProfileID: 20}, map[string]any{"profileId": 20.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			rec := &bodyRecorder{bodies: map[string]string{}}
			c := p.client(t, func(c *tenantos.Config) { c.Transport = rec })
			if err := c.StartReinstallation(context.Background(), 3, tt.r); err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			json.Unmarshal([]byte(rec.body("/api/servers/3/provisioning/startReinstallation")), &got)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("body %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReinstallationRunsThroughItsSteps(t *testing.T) {
	ctx := context.Background()
	p := newPanel(t)
	before := time.Now().UTC().Truncate(time.Second)
	err := p.c.StartReinstallation(ctx, 3, tenantos.Reinstallation{ProfileID: 2, DiskLayoutID: 4, RootPassword: rootPassword,
		Hostname: "fresh.example.net", RunScripts: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.c.InstallStatus(ctx, 3)
	if err != nil || !st.Running || !st.CanCancel || st.ProfileID != 2 || st.Step < 1 || len(st.Steps) == 0 ||
		st.Steps[0].Description != "Preparing installation" || st.Started().Before(before) || st.Started().Location() != time.UTC {
		t.Fatalf("status while running = %+v, %v", st, err)
	}
	if s, err := p.c.Server(ctx, 3); err != nil || !s.ReinstallationRunning {
		t.Errorf("server while installing = %+v, %v", s, err)
	}
	adaptertest.Eventually(t, "the install to complete", func() bool {
		st, err = p.c.InstallStatus(ctx, 3)
		return err == nil && !st.Running
	})
	if !st.Completed || st.Failed || st.Cancelled || len(st.Steps) != 7 || st.Steps[6].Status != "completed" || st.Started() != st.Steps[0].Time {
		t.Errorf("final status = %+v", st)
	}
	if s, err := p.c.Server(ctx, 3); err != nil || s.OS != "Ubuntu 24.04" || s.Hostname != "fresh.example.net" || s.ReinstallationRunning {
		t.Errorf("installed server = %+v, %v", s, err)
	}
}

func TestInstallStatusBeforeAnyInstallIsZero(t *testing.T) {
	p := newPanel(t)
	st, err := p.c.InstallStatus(context.Background(), 2)
	if err != nil || st.Running || st.Completed || st.ProfileID != 0 || len(st.Steps) != 0 || !st.Started().IsZero() {
		t.Errorf("status = %+v, %v", st, err)
	}
}

func TestFailedInstallCarriesThePanelsMessage(t *testing.T) {
	ctx := context.Background()
	p := newPanel(t)
	p.sim.Inject(simkit.Fault{Op: "provisioning.startReinstallation", Times: 1, TaskError: "disk /dev/sda not found"})
	if err := p.c.StartReinstallation(ctx, 3, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword}); err != nil {
		t.Fatal(err)
	}
	var st tenantos.InstallStatus
	adaptertest.Eventually(t, "the install to end", func() bool {
		var err error
		st, err = p.c.InstallStatus(ctx, 3)
		return err == nil && !st.Running
	})
	if !st.Failed || st.Completed || st.ErrorMessage != "disk /dev/sda not found" || st.Steps[len(st.Steps)-1].Status != "failed" {
		t.Errorf("status = %+v", st)
	}
}

func TestStopReinstallationCancelsIt(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name              string
		withoutPowerReset bool
		uri               string
	}{
		{"with a reset", false, "/api/servers/3/provisioning/stopReinstallation"},
		{"without a reset", true, "/api/servers/3/provisioning/stopReinstallation?withoutPowerReset=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// An install that outlasts the test, on a server that is off
			// and stays off until something resets it.
			p := newPanel(t, func(c *sim.Config) { c.InstallDuration = time.Minute })
			rec := &bodyRecorder{bodies: map[string]string{}}
			c := p.client(t, func(c *tenantos.Config) { c.Transport = rec })
			if err := c.StartReinstallation(ctx, 3, tenantos.Reinstallation{ProfileID: 3, RootPassword: rootPassword,
				InstallPowerAction: "noRestart"}); err != nil {
				t.Fatal(err)
			}
			if err := c.StopReinstallation(ctx, 3, tt.withoutPowerReset); err != nil {
				t.Fatal(err)
			}
			if !rec.sent(tt.uri) {
				t.Errorf("did not send %s", tt.uri)
			}
			st, err := c.InstallStatus(ctx, 3)
			if err != nil || st.Running || !st.Cancelled || st.CanCancel {
				t.Errorf("status after stop = %+v, %v", st, err)
			}
			if !tt.withoutPowerReset {
				adaptertest.Eventually(t, "the reset to switch the server on", func() bool { return p.machine(t, 3).Power == "online" })
			}
			// Nothing left to stop: it succeeds all the same.
			if err := c.StopReinstallation(ctx, 3, tt.withoutPowerReset); err != nil {
				t.Errorf("stopping again: %v", err)
			}
		})
	}
}

func TestConsoleOpensOnlyFromTheAuthorizedIP(t *testing.T) {
	tests := []struct {
		name, ip, mode string
		want           int
	}{
		{"authorized IP", "127.0.0.1", "standard", http.StatusOK},
		{"no IP binds the caller", "", "", http.StatusOK},
		{"another IP", "10.9.9.9", "web", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			session, err := p.c.StartConsole(context.Background(), 1, tt.ip, tt.mode)
			if err != nil || !strings.HasPrefix(session.AccessURL, p.url+"/console/") {
				t.Fatalf("StartConsole = %+v, %v", session, err)
			}
			res, err := http.Get(session.AccessURL)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Errorf("opening the console answered %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
}

func TestStatsOfEveryCategory(t *testing.T) {
	ctx := context.Background()
	from := time.Date(2025, 8, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		id        int
		category  string
		mode      string
		q         tenantos.StatsQuery
		ports     int
		minPoints int
		check     func(tenantos.StatsPoint) bool
	}{
		{"network by window", 2, "network", "graph", tenantos.StatsQuery{From: from, To: from.Add(time.Hour)}, 1, 13,
			func(p tenantos.StatsPoint) bool {
				return !p.Timestamp.IsZero() && p.BytesIn > 0 && p.BytesOut > 0 && p.PacketsIn > 0
			}},
		{"cpu", 1, "cpu", "graph", tenantos.StatsQuery{Predefined: "1h"}, 0, 12,
			func(p tenantos.StatsPoint) bool { return p.Usage > 0 && p.Usage <= 100 && p.Cores == 24 }},
		{"memory per day", 1, "memory", "text", tenantos.StatsQuery{Predefined: "14days"}, 0, 15,
			func(p tenantos.StatsPoint) bool {
				return p.Date != "" && p.Timestamp.IsZero() && p.Peak >= p.Usage && p.Total == 65536
			}},
		{"diskio", 1, "diskio", "graph", tenantos.StatsQuery{Predefined: "1h"}, 0, 12,
			func(p tenantos.StatsPoint) bool { return p.ReadBytes > 0 && p.WriteOps > 0 }},
		{"ipmi online", 1, "ipmi", "graph", tenantos.StatsQuery{Predefined: "1h"}, 0, 12,
			func(p tenantos.StatsPoint) bool {
				return p.PowerState == "on" && p.PowerWatts >= 70 && p.InletTempC > 15 && p.CPUTempC > p.InletTempC && p.FanRPM > 0
			}},
		{"ipmi offline", 3, "ipmi", "graph", tenantos.StatsQuery{Predefined: "1h"}, 0, 12,
			func(p tenantos.StatsPoint) bool { return p.PowerState == "off" && p.PowerWatts < 10 && p.FanRPM == 0 }},
		{"ipmi per day", 1, "ipmi", "text", tenantos.StatsQuery{Predefined: "14days"}, 0, 15,
			func(p tenantos.StatsPoint) bool { return p.Date != "" && p.PowerWatts > 0 && p.Peak >= p.PowerWatts }},
	}
	p := newPanel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := p.c.Stats(ctx, tt.id, tt.category, tt.mode, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			points := st.Points
			if tt.ports > 0 {
				if len(st.Ports) != tt.ports || len(st.Points) != 0 || st.Ports[0].Switch == "" || st.Ports[0].Port == "" {
					t.Fatalf("ports = %+v", st.Ports)
				}
				points = st.Ports[0].Points
				if !points[0].Timestamp.Equal(from) {
					t.Errorf("first point at %v, want %v", points[0].Timestamp, from)
				}
			}
			if len(points) < tt.minPoints {
				t.Fatalf("%d points, want at least %d", len(points), tt.minPoints)
			}
			for _, pt := range points {
				if !tt.check(pt) {
					t.Fatalf("point %+v", pt)
				}
			}
		})
	}
}

func TestMissingThingsWrapErrNotFound(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(c *tenantos.Client) error
	}{
		{"server", func(c *tenantos.Client) error { _, err := c.Server(ctx, 99); return err }},
		{"update", func(c *tenantos.Client) error { _, err := c.UpdateServer(ctx, 99, tenantos.ServerUpdate{}); return err }},
		{"assignments", func(c *tenantos.Client) error { _, err := c.IPAssignments(ctx, 99); return err }},
		{"add assignment", func(c *tenantos.Client) error {
			_, err := c.AddIPAssignment(ctx, 99, tenantos.NewIPAssignment{IP: "10.10.20.5"})
			return err
		}},
		{"unknown assignment", func(c *tenantos.Client) error { return c.DeleteIPAssignment(ctx, 1, 999) }},
		{"another server's assignment", func(c *tenantos.Client) error { return c.DeleteIPAssignment(ctx, 1, 201) }},
		{"power", func(c *tenantos.Client) error { return c.Power(ctx, 99, tenantos.PowerOn) }},
		{"power status", func(c *tenantos.Client) error { _, err := c.PowerStatus(ctx, 99); return err }},
		{"profiles", func(c *tenantos.Client) error { _, err := c.Profiles(ctx, 99); return err }},
		{"reinstall", func(c *tenantos.Client) error {
			return c.StartReinstallation(ctx, 99, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword})
		}},
		{"install status", func(c *tenantos.Client) error { _, err := c.InstallStatus(ctx, 99); return err }},
		{"stop", func(c *tenantos.Client) error { return c.StopReinstallation(ctx, 99, false) }},
		{"console", func(c *tenantos.Client) error { _, err := c.StartConsole(ctx, 99, "127.0.0.1", ""); return err }},
		{"stats category", func(c *tenantos.Client) error {
			_, err := c.Stats(ctx, 1, "gpu", "graph", tenantos.StatsQuery{})
			return err
		}},
	}
	p := newPanel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(p.c)
			if fe := adaptertest.FailureOf(t, err, tenantos.Provider); !errors.Is(err, tenantos.ErrNotFound) || !errors.Is(err, failure.ErrNotFound) ||
				fe.Class != failure.Permanent || fe.Status != http.StatusNotFound || fe.Message == "" {
				t.Errorf("err = %v, want a permanent 404 ErrNotFound", err)
			}
		})
	}
}

func TestRefusedInputKeepsThePanelsWordingPerField(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(c *tenantos.Client) error
		want []string
	}{
		{"unknown profile and no password", func(c *tenantos.Client) error {
			return c.StartReinstallation(ctx, 1, tenantos.Reinstallation{ProfileID: 77})
		}, []string{"The selected profile id is invalid.", "The rootpassword field is required."}},
		{"unknown layout and script", func(c *tenantos.Client) error {
			return c.StartReinstallation(ctx, 1, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword, DiskLayoutID: 99, RunScripts: []int{5}})
		}, []string{"The selected disklayout id is invalid.", "The selected run scripts.0 is invalid."}},
		{"not an address", func(c *tenantos.Client) error {
			_, err := c.AddIPAssignment(ctx, 1, tenantos.NewIPAssignment{IP: "10.10.300.1"})
			return err
		}, []string{"The ip field must be a valid IP address."}},
		{"no tags", func(c *tenantos.Client) error { _, err := c.ServersByTags(ctx, nil); return err },
			[]string{"The tags field is required."}},
		{"bad suspend power action", func(c *tenantos.Client) error {
			_, err := c.UpdateServer(ctx, 1, tenantos.ServerUpdate{SuspendUserIDs: &[]int{1}, SuspendPowerAction: "explode"})
			return err
		}, []string{"The selected suspend power action is invalid."}},
		{"bad console IP", func(c *tenantos.Client) error { _, err := c.StartConsole(ctx, 1, "10.0.0", ""); return err },
			[]string{"The authorized ip field must be a valid IP address."}},
		{"range the category lacks", func(c *tenantos.Client) error {
			_, err := c.Stats(ctx, 1, "ipmi", "graph", tenantos.StatsQuery{Predefined: "year"})
			return err
		}, []string{"The selected predefined is invalid."}},
	}
	p := newPanel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(p.c)
			if fe := adaptertest.FailureOf(t, err, tenantos.Provider); fe.Class != failure.Permanent || fe.Status != http.StatusUnprocessableEntity ||
				fe.Message != strings.Join(tt.want, " ") {
				t.Errorf("failure %+v, want a permanent 422 saying %q", fe, tt.want)
			}
		})
	}
}

func TestRefusalsArePermanentInThePanelsWords(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		call   func(t *testing.T, p *panel) error
		status int
		msg    string
	}{
		{"bad key", func(t *testing.T, p *panel) error {
			_, err := p.client(t, func(c *tenantos.Config) { c.APIKey = "wrong" }).Servers(ctx)
			return err
		}, http.StatusUnauthorized, "Unauthenticated."},
		{"address already assigned", func(t *testing.T, p *panel) error {
			_, err := p.c.AddIPAssignment(ctx, 1, tenantos.NewIPAssignment{IP: "10.10.10.32"})
			return err
		}, http.StatusBadRequest, "The IP address 10.10.10.32 is already assigned to a server."},
		{"unsupported power method", func(t *testing.T, p *panel) error { return p.c.Power(ctx, 1, "setPowerDance") },
			http.StatusBadRequest, "The power method setPowerDance is not supported by the power provider of this server."},
		{"reinstall while one runs", func(t *testing.T, p *panel) error {
			r := tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword}
			if err := p.c.StartReinstallation(ctx, 1, r); err != nil {
				t.Fatal(err)
			}
			return p.c.StartReinstallation(ctx, 1, r)
		}, http.StatusBadRequest, "A reinstallation is already running for this server."},
		{"reinstall of a suspended server", func(t *testing.T, p *panel) error {
			return p.c.StartReinstallation(ctx, 4, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword})
		}, http.StatusForbidden, "The server is suspended."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := adaptertest.FailureOf(t, tt.call(t, newPanel(t)), tenantos.Provider)
			if fe.Class != failure.Permanent || fe.Status != tt.status || fe.Message != tt.msg || fe.RetryAfter != 0 {
				t.Errorf("failure %+v, want permanent %d saying %q", fe, tt.status, tt.msg)
			}
		})
	}
}

func TestProviderTroubleIsTransient(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		fault simkit.Fault
		call  func(c *tenantos.Client) error
		retry time.Duration
	}{
		{"500", simkit.Fault{Op: "servers.get", Status: 500},
			func(c *tenantos.Client) error { _, err := c.Server(ctx, 1); return err }, 0},
		{"502 from the BMC", simkit.Fault{Op: "power.setPowerOn", Status: 502, Message: "BMC unreachable"},
			func(c *tenantos.Client) error { return c.Power(ctx, 3, tenantos.PowerOn) }, 0},
		{"503 with Retry-After", simkit.Fault{Op: "provisioning.getInstallStatus", Status: 503, RetryAfter: 30 * time.Second},
			func(c *tenantos.Client) error { _, err := c.InstallStatus(ctx, 1); return err }, 30 * time.Second},
		{"429 with Retry-After", simkit.Fault{Op: "provisioning.startReinstallation", Status: 429, RetryAfter: 7 * time.Second},
			func(c *tenantos.Client) error {
				return c.StartReinstallation(ctx, 1, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword})
			}, 7 * time.Second},
		{"429 rounds Retry-After up to seconds", simkit.Fault{Op: "ipassignments.add", Status: 429, RetryAfter: 2500 * time.Millisecond},
			func(c *tenantos.Client) error {
				_, err := c.AddIPAssignment(ctx, 1, tenantos.NewIPAssignment{IP: "10.10.20.5"})
				return err
			}, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			p.sim.Inject(tt.fault)
			fe := adaptertest.FailureOf(t, tt.call(p.c), tenantos.Provider)
			if fe.Class != failure.Transient || fe.Status != tt.fault.Status || fe.RetryAfter != tt.retry || fe.Message == "" {
				t.Errorf("failure %+v, want transient %d with RetryAfter %v", fe, tt.fault.Status, tt.retry)
			}
			if tt.fault.Message != "" && fe.Message != tt.fault.Message {
				t.Errorf("message %q, want the panel's %q", fe.Message, tt.fault.Message)
			}
		})
	}
}

func TestDroppedAnswerIsTransient(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		op   string
		call func(c *tenantos.Client) error
		// done says whether the call was carried out, as a dropped one is.
		done func(t *testing.T, p *panel) bool
	}{
		{"reinstall", "provisioning.startReinstallation",
			func(c *tenantos.Client) error {
				return c.StartReinstallation(ctx, 1, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword})
			},
			func(_ *testing.T, p *panel) bool { return p.sim.CountInstalls(1) == 1 }},
		{"add assignment", "ipassignments.add",
			func(c *tenantos.Client) error {
				_, err := c.AddIPAssignment(ctx, 1, tenantos.NewIPAssignment{IP: "10.10.20.5"})
				return err
			},
			func(t *testing.T, p *panel) bool { return len(p.machine(t, 1).IPs) == 2 }},
		{"power", "power.setPowerOff",
			func(c *tenantos.Client) error { return c.Power(ctx, 1, tenantos.PowerOff) },
			func(t *testing.T, p *panel) bool {
				adaptertest.Eventually(t, "the server off", func() bool { return p.machine(t, 1).Power == "offline" })
				return true
			}},
		{"read", "servers.get",
			func(c *tenantos.Client) error { _, err := c.Server(ctx, 1); return err },
			func(*testing.T, *panel) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			p.sim.Inject(simkit.Fault{Op: tt.op, Times: 1, Drop: true})
			fe := adaptertest.FailureOf(t, tt.call(p.c), tenantos.Provider)
			if fe.Class != failure.Transient || fe.Status != 0 || fe.Message == "" {
				t.Errorf("failure %+v, want transient without a status", fe)
			}
			if !tt.done(t, p) {
				t.Error("the dropped call was not carried out")
			}
		})
	}
}

func TestHungCallTimesOutTransient(t *testing.T) {
	p := newPanel(t)
	p.sim.Inject(simkit.Fault{Op: "provisioning.getInstallStatus", Hang: true})
	c := p.client(t, func(cfg *tenantos.Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	_, err := c.InstallStatus(context.Background(), 1)
	if fe := adaptertest.FailureOf(t, err, tenantos.Provider); fe.Class != failure.Transient || fe.Status != 0 {
		t.Errorf("failure %+v, want transient without a status", fe)
	}
}

func TestRefusedConnectionIsTransient(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	c, err := tenantos.New(tenantos.Config{URL: url, APIKey: apiKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Servers(context.Background())
	if fe := adaptertest.FailureOf(t, err, tenantos.Provider); fe.Class != failure.Transient || fe.Status != 0 {
		t.Errorf("failure %+v, want transient without a status", fe)
	}
}

func TestCancelledCallIsNotAProviderFailure(t *testing.T) {
	p := newPanel(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.c.Server(ctx, 1)
	var fe *failure.Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &fe) {
		t.Errorf("err = %v, want context.Canceled unclassified", err)
	}
}

func TestErrorsNeverCarryTheKeyOrARootPassword(t *testing.T) {
	ctx := context.Background()
	const badKey = "tenantos-secret-key-not-accepted"
	p := newPanel(t)
	bad := p.client(t, func(c *tenantos.Config) { c.APIKey = badKey })
	slow := p.client(t, func(c *tenantos.Config) { c.RequestTimeout = 50 * time.Millisecond })
	reinstall := tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword}
	p.sim.Inject(
		// A panel that echoes what it was sent.
		simkit.Fault{Op: "provisioning.startReinstallation", Target: "1", Times: 1, Status: 500,
			Message: "install failed for rootpassword " + rootPassword + " with key " + apiKey},
		simkit.Fault{Op: "provisioning.startReinstallation", Target: "2", Drop: true},
		simkit.Fault{Op: "servers.get", Target: "2", Status: 500, Message: "Bearer " + apiKey},
		simkit.Fault{Op: "provisioning.getInstallStatus", Hang: true})
	calls := []func() error{
		func() error { _, err := bad.Server(ctx, 1); return err },
		func() error { return bad.StartReinstallation(ctx, 1, reinstall) },
		func() error { return p.c.StartReinstallation(ctx, 1, reinstall) },
		func() error { return p.c.StartReinstallation(ctx, 2, reinstall) },
		func() error { return p.c.StartReinstallation(ctx, 99, reinstall) },
		func() error {
			return p.c.StartReinstallation(ctx, 3, tenantos.Reinstallation{ProfileID: 1, RootPassword: rootPassword, DiskLayoutID: 99})
		},
		func() error {
			return p.c.StartReinstallation(ctx, 3, tenantos.Reinstallation{ProfileID: 1, RootPassword: "short"})
		},
		func() error { _, err := p.c.Server(ctx, 2); return err },
		func() error { _, err := slow.InstallStatus(ctx, 1); return err },
	}
	for i, call := range calls {
		err := call()
		if err == nil {
			t.Fatalf("call %d succeeded", i)
		}
		text := fmt.Sprintf("%v %+v %#v %s", err, err, err, failure.UserMessage(err))
		for _, secret := range []string{apiKey, badKey, rootPassword, "short"} {
			if strings.Contains(text, secret) {
				t.Errorf("call %d: error %q carries %q", i, text, secret)
			}
		}
	}
}

// observation is one ObserveProviderCall.
type observation struct {
	provider, op string
	failed       bool
}

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recorder) ObserveProviderCall(provider, op string, err error, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{provider, op, err != nil})
}

func TestObserverSeesEveryRequest(t *testing.T) {
	p := newPanel(t)
	rec := &recorder{}
	c, err := tenantos.New(tenantos.Config{URL: p.url, APIKey: apiKey}, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.Server(ctx, 1)
	c.Server(ctx, 99)
	c.Power(ctx, 1, tenantos.PowerReset)
	c.Stats(ctx, 1, "ipmi", "graph", tenantos.StatsQuery{Predefined: "1h"})
	want := []observation{{"tenantos", "servers.get", false}, {"tenantos", "servers.get", true},
		{"tenantos", "power.setPowerReset", false}, {"tenantos", "stats.ipmi", false}}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.obs, want) {
		t.Errorf("observed %+v, want %+v", rec.obs, want)
	}
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	full := tenantos.Config{URL: "https://panel.example.test", APIKey: apiKey}
	tests := []struct {
		name string
		mod  func(*tenantos.Config)
	}{
		{"no URL", func(c *tenantos.Config) { c.URL = "" }},
		{"URL without scheme", func(c *tenantos.Config) { c.URL = "panel.example.test" }},
		{"no key", func(c *tenantos.Config) { c.APIKey = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := full
			tt.mod(&cfg)
			c, err := tenantos.New(cfg, nil)
			if err == nil || c != nil {
				t.Error("New accepted it")
			}
			if err != nil && strings.Contains(err.Error(), apiKey) {
				t.Errorf("error %q carries the key", err)
			}
		})
	}
}

func TestRedirectIsPermanentAndNotFollowed(t *testing.T) {
	p := newPanel(t)
	// A front that moves every call elsewhere, as an http:// URL of an
	// https:// panel does.
	front := httptest.NewServer(http.RedirectHandler(p.url+"/api/servers/1", http.StatusMovedPermanently))
	t.Cleanup(front.Close)
	c := p.client(t, func(c *tenantos.Config) { c.URL = front.URL })
	_, err := c.Server(context.Background(), 1)
	fe := adaptertest.FailureOf(t, err, tenantos.Provider)
	if fe.Class != failure.Permanent || fe.Status != http.StatusMovedPermanently || !strings.Contains(fe.Message, p.url) {
		t.Errorf("failure %+v, want a permanent 301 naming where it leads", fe)
	}
	if n := p.sim.CountCalls("servers.get", ""); n != 0 {
		t.Errorf("the redirect was followed: %d calls reached the panel", n)
	}
}

// TestAnswersAreDecodedTolerantly serves the forms the simulator does not
// use: numbers as strings, booleans as true or "1", nulls.
func TestAnswersAreDecodedTolerantly(t *testing.T) {
	answers := map[string]string{
		"/api/servers/7": `{"result":{"id":"7","servername":"x","hostname":null,"user_id":"3","tags":["a"],
			"suspendedUserIds":["3"],"isSuspended":true,"cachedPowerstatus":null,"reinstallationRunning":"1","diskwipeRunning":false,
			"detailedHardwareInformation":{"cpu":{"model":"C","value":3700.5,"cores":8,"threads":"16"},"memory":{"value":"65536","count":"4"},
			"disk":{"details":[{"model":"D","size":476940}]}},
			"ipassignments":[{"ip":"2001:db8::7","primary_ip":"1","subnetinformation":{"cidr":"64","gw":null}}]},"message":"success"}`,
		"/api/servers/7/provisioning/getInstallStatus": `{"result":{"profileId":"4","running":false,"completed":"1","step":"2",
			"installProgress":[{"step":"2","description":"b","status":"completed","time":"2025-08-25 10:00:40"},
			{"step":1,"description":"a","status":"completed","time":"2025-08-25T10:00:00.000000Z"}]},"message":"success"}`,
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answers[r.URL.Path])
	}))
	t.Cleanup(ts.Close)
	c, err := tenantos.New(tenantos.Config{URL: ts.URL, APIKey: apiKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Server(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != 7 || s.UserID != 3 || !s.Suspended || !slices.Equal(s.SuspendedUserIDs, []int{3}) || s.Power != "" || !s.ReinstallationRunning ||
		s.DiskWipeRunning || s.Hardware.CPUMHz != 3700 || s.Hardware.CPUThreads != 16 || s.Hardware.MemoryMB != 65536 ||
		s.Hardware.MemoryModules != 4 || s.Hardware.Disks[0].SizeMiB != 476940 ||
		len(s.IPs) != 1 || !s.IPs[0].IPv6 || !s.IPs[0].Primary || s.IPs[0].CIDR != 64 {
		t.Errorf("server = %+v", s)
	}
	st, err := c.InstallStatus(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 8, 25, 10, 0, 0, 0, time.UTC); st.ProfileID != 4 || !st.Completed || st.Step != 2 || !st.Started().Equal(want) {
		t.Errorf("status = %+v, started %v, want %v", st, st.Started(), want)
	}
}
