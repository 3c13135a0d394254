package sim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

// simWith serves a simulator with the demo VMs, its configuration changed
// by edit, and returns it with its base URL.
func simWith(t *testing.T, edit func(*sim.Config)) (*sim.Server, string) {
	t.Helper()
	cfg := sim.Config{TokenID: tokenID, TokenSecret: tokenSecret, TaskDuration: taskTime, Seed: 1}
	if edit != nil {
		edit(&cfg)
	}
	s := sim.New(cfg)
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts.URL
}

// apiData calls the API with the token and decodes "data" into v; it fails
// the test unless the answer is 200.
func apiData(t *testing.T, method, base, path, body string, v any) {
	t.Helper()
	status, b := raw(t, method, base+"/api2/json"+path, body)
	if status != "200 OK" {
		t.Fatalf("%s %s: %s %s", method, path, status, b)
	}
	if err := json.Unmarshal([]byte(b), &struct{ Data any }{v}); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, b)
	}
}

// startTask calls an endpoint that starts a task and returns its UPID.
func startTask(t *testing.T, base, method, path, body string) string {
	t.Helper()
	var upid string
	apiData(t, method, base, path, body, &upid)
	if upid == "" {
		t.Fatalf("%s %s answered no UPID", method, path)
	}
	return upid
}

// taskEnd waits for the task to end and returns it as Tasks shows it.
func taskEnd(t *testing.T, s *sim.Server, upid string) sim.TaskView {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, tv := range s.Tasks("", 0) {
			if tv.UPID == upid && !tv.End.IsZero() {
				return tv
			}
		}
	}
	t.Fatalf("task %s did not end", upid)
	return sim.TaskView{}
}

// upidDecode is pve-common's upid_decode pattern (PVE::Tools): up to 9 hex
// digits for pstart.
var upidDecode = regexp.MustCompile(`^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$`)

// decodeUPID returns a UPID's pstart field and its start time.
func decodeUPID(t *testing.T, upid string) (pstart string, start time.Time) {
	t.Helper()
	m := upidDecode.FindStringSubmatch(upid)
	if m == nil {
		t.Fatalf("UPID %q does not match pve-common's upid_decode", upid)
	}
	sec, _ := strconv.ParseInt(m[5], 16, 64)
	return m[4], time.Unix(sec, 0)
}

// near reports whether got is within slack of want.
func near(got, want, slack time.Duration) bool { return got > want-slack && got < want+slack }

func TestPstartCountsClockTicksSinceTheNodeBooted(t *testing.T) {
	const day = 24 * time.Hour
	// 2^32 ticks of 100 Hz are some 497.1 days.
	tests := []struct {
		name   string
		cfg    map[string]time.Duration // Config.NodeUptime
		set    time.Duration            // SetNodeUptime("pve2", set) when not zero
		uptime time.Duration
		digits int
	}{
		{name: "default uptime", uptime: 10 * day, digits: 8},
		{name: "496 days in the config", cfg: map[string]time.Duration{"pve2": 496 * day}, uptime: 496 * day, digits: 8},
		{name: "498 days in the config", cfg: map[string]time.Duration{"pve2": 498 * day}, uptime: 498 * day, digits: 9},
		{name: "600 days set later", set: 600 * day, uptime: 600 * day, digits: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := simWith(t, func(c *sim.Config) { c.NodeUptime = tt.cfg })
			if tt.set != 0 && !s.SetNodeUptime("pve2", tt.set) {
				t.Fatal("SetNodeUptime: no node pve2")
			}
			upid := startTask(t, base, "POST", "/nodes/pve2/qemu/102/status/reset", "")
			pstart, _ := decodeUPID(t, upid)
			if len(pstart) != tt.digits {
				t.Errorf("pstart %s of %s has %d hex digits, want %d", pstart, upid, len(pstart), tt.digits)
			}
			ticks, _ := strconv.ParseUint(pstart, 16, 64)
			if got := time.Duration(ticks) * 10 * time.Millisecond; !near(got, tt.uptime, 5*time.Second) {
				t.Errorf("pstart is %v after boot, want about %v", got, tt.uptime)
			}

			// The task can be looked up by its UPID, and says the same.
			var status map[string]any
			apiData(t, "GET", base, "/nodes/pve2/tasks/"+upid+"/status", "", &status)
			if status["pstart"] != float64(ticks) || status["upid"] != upid {
				t.Errorf("task status %v, want pstart %d", status, ticks)
			}
			var list []map[string]any
			apiData(t, "GET", base, "/nodes/pve2/tasks?source=all", "", &list)
			if len(list) != 1 || list[0]["pstart"] != float64(ticks) {
				t.Errorf("task list %v, want the task with pstart %d", list, ticks)
			}
			if got := taskEnd(t, s, upid); got.Exit != "OK" {
				t.Errorf("task ended %q", got.Exit)
			}

			// The node's uptime agrees with pstart.
			var node struct{ Uptime int64 }
			apiData(t, "GET", base, "/nodes/pve2/status", "", &node)
			var res []struct {
				Node   string
				Uptime int64
			}
			apiData(t, "GET", base, "/cluster/resources?type=node", "", &res)
			i := slices.IndexFunc(res, func(r struct {
				Node   string
				Uptime int64
			}) bool {
				return r.Node == "pve2"
			})
			for what, up := range map[string]int64{"node status": node.Uptime, "cluster resources": res[i].Uptime} {
				if !near(time.Duration(up)*time.Second, tt.uptime, 5*time.Second) {
					t.Errorf("%s: uptime %ds, want about %v", what, up, tt.uptime)
				}
			}
		})
	}
}

func TestTaskPathsTakeUpToNineDigitsOfPstart(t *testing.T) {
	_, base := simWith(t, nil)
	tests := []struct{ upid, want string }{
		{"UPID:pve1:00001234:1A2B3C4D5:66F0A1B2:qmstart:100:root@pam:", "500 no such task"},
		{"UPID:pve1:00001234:1A2B3C4D:66F0A1B2:qmstart:100:root@pam:", "500 no such task"},
		{"UPID:pve1:00001234:1A2B3C4D5E:66F0A1B2:qmstart:100:root@pam:", "400 Parameter verification failed."},
		{"UPID:pve1:00001234:1A2B3C4:66F0A1B2:qmstart:100:root@pam:", "400 Parameter verification failed."},
	}
	for _, tt := range tests {
		status, body := raw(t, "GET", base+"/api2/json/nodes/pve1/tasks/"+tt.upid+"/status", "")
		if !strings.HasPrefix(status, tt.want) {
			t.Errorf("%s: %s %s, want %s", tt.upid, status, body, tt.want)
		}
	}
}

func TestNodeClockSkewDatesItsTasksAndBackups(t *testing.T) {
	tests := []struct {
		node string
		vmid int
		skew time.Duration
		// viaConfig sets the skew in Config.NodeClockSkew, else with
		// SetNodeClockSkew.
		viaConfig bool
	}{
		{node: "pve2", vmid: 102, skew: 3 * time.Hour, viaConfig: true},
		{node: "pve1", vmid: 101, skew: -90 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.node, tt.skew), func(t *testing.T) {
			s, base := simWith(t, func(c *sim.Config) {
				if tt.viaConfig {
					c.NodeClockSkew = map[string]time.Duration{tt.node: tt.skew}
				}
			})
			if !tt.viaConfig && !s.SetNodeClockSkew(tt.node, tt.skew) {
				t.Fatalf("SetNodeClockSkew: no node %s", tt.node)
			}
			const slack = 3 * time.Second
			now := time.Now()
			nodeNow := now.Add(tt.skew)
			if got, ok := s.NodeTime(tt.node); !ok || !near(got.Sub(nodeNow), 0, slack) {
				t.Errorf("NodeTime = %v, want about %v", got, nodeNow)
			}
			var clock struct {
				Time, Localtime int64
				Timezone        string
			}
			apiData(t, "GET", base, "/nodes/"+tt.node+"/time", "", &clock)
			if !near(time.Unix(clock.Time, 0).Sub(nodeNow), 0, slack) || clock.Timezone != "Europe/Berlin" {
				t.Errorf("node time %+v, want about %d in Europe/Berlin", clock, nodeNow.Unix())
			}

			// A backup on the node: its task and the archive are dated by
			// the node's clock.
			upid := startTask(t, base, "POST", "/nodes/"+tt.node+"/vzdump", fmt.Sprintf("vmid=%d&storage=local", tt.vmid))
			if _, start := decodeUPID(t, upid); !near(start.Sub(nodeNow), 0, slack) {
				t.Errorf("UPID starts %v, want the node's %v", start, nodeNow)
			}
			task := taskEnd(t, s, upid)
			if task.Exit != "OK" || !near(task.Start.Sub(nodeNow), 0, slack) || !near(task.End.Sub(nodeNow), 0, slack) {
				t.Errorf("task %+v, want OK, started and ended about %v", task, nodeNow)
			}
			var backups []struct {
				Volid string
				Ctime int64
			}
			apiData(t, "GET", base, fmt.Sprintf("/nodes/%s/storage/local/content?content=backup&vmid=%d", tt.node, tt.vmid), "", &backups)
			if len(backups) == 0 {
				t.Fatal("no backup")
			}
			b := backups[len(backups)-1]
			m := regexp.MustCompile(`vzdump-qemu-\d+-(\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d)\.vma`).FindStringSubmatch(b.Volid)
			if m == nil {
				t.Fatalf("backup volid %q", b.Volid)
			}
			named, _ := time.Parse("2006_01_02-15_04_05", m[1])
			if !near(time.Unix(b.Ctime, 0).Sub(nodeNow), 0, slack) || !near(named.Sub(nodeNow), 0, slack) {
				t.Errorf("backup %s with ctime %d, want it made about %v", b.Volid, b.Ctime, nodeNow)
			}

			// The task list shows the node's times and filters by them:
			// halfway between our clock and the node's is before the task
			// when the node is ahead, after it when it is behind.
			var list []struct {
				UPID               string
				Starttime, Endtime int64
			}
			apiData(t, "GET", base, "/nodes/"+tt.node+"/tasks", "", &list)
			if len(list) != 1 || list[0].UPID != upid || list[0].Starttime != task.Start.Unix() || list[0].Endtime != task.End.Unix() {
				t.Errorf("task list %+v, want the backup from %d to %d", list, task.Start.Unix(), task.End.Unix())
			}
			half := now.Add(tt.skew / 2).Unix()
			for _, f := range []struct {
				filter string
				listed bool
			}{
				{fmt.Sprintf("since=%d", half), tt.skew > 0},
				{fmt.Sprintf("until=%d", half), tt.skew < 0},
				{fmt.Sprintf("since=%d&until=%d", nodeNow.Add(-time.Minute).Unix(), nodeNow.Add(time.Minute).Unix()), true},
			} {
				var got []map[string]any
				apiData(t, "GET", base, "/nodes/"+tt.node+"/tasks?"+f.filter, "", &got)
				if (len(got) == 1) != f.listed {
					t.Errorf("%s: %d tasks, want listed %v", f.filter, len(got), f.listed)
				}
			}
		})
	}
}

func TestNodeTimeFollowsBerlinSummerTime(t *testing.T) {
	berlin, tzErr := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		at     string
		offset int64
	}{
		{"2025-01-15T12:00:00Z", 3600},
		{"2024-03-31T00:58:00Z", 3600}, // two minutes before CEST begins
		{"2024-03-31T01:02:00Z", 7200},
		{"2025-07-01T12:00:00Z", 7200},
		{"2024-10-27T00:58:00Z", 7200}, // two minutes before CEST ends
		{"2024-10-27T01:02:00Z", 3600},
		{"2026-03-29T01:02:00Z", 7200},
	}
	s, base := simWith(t, nil)
	for _, tt := range tests {
		at, _ := time.Parse(time.RFC3339, tt.at)
		s.SetNodeClockSkew("pve1", time.Until(at))
		var clock struct{ Time, Localtime int64 }
		apiData(t, "GET", base, "/nodes/pve1/time", "", &clock)
		if !near(time.Unix(clock.Time, 0).Sub(at), 0, 3*time.Second) || clock.Localtime-clock.Time != tt.offset {
			t.Errorf("at %s: time %d, localtime %d; want about %d and %+d", tt.at, clock.Time, clock.Localtime, at.Unix(), tt.offset)
		}
		if tzErr == nil {
			if _, off := at.In(berlin).Zone(); int64(off) != tt.offset {
				t.Errorf("at %s: zoneinfo says offset %d, the test %d", tt.at, off, tt.offset)
			}
		}
	}
}

func TestConfigDeleteOfAnUnsetKeyWarnsAndAppliesTheRest(t *testing.T) {
	const warning = "cannot delete 'ide2' - not set in current configuration!"
	tests := []struct {
		method string
		task   bool // POST runs a qmconfig task; PUT answers null
	}{
		{"POST", true},
		{"PUT", false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			s, base := simWith(t, nil)
			status, body := raw(t, tt.method, base+"/api2/json/nodes/pve1/qemu/101/config", "delete=ide2&tags=blue&cores=2")
			if status != "200 OK" {
				t.Fatalf("%s config: %s %s", tt.method, status, body)
			}
			var answer struct{ Data *string }
			json.Unmarshal([]byte(body), &answer)
			if tt.task != (answer.Data != nil) {
				t.Fatalf("answer %s, want a UPID %v", body, tt.task)
			}
			if tt.task {
				got := taskEnd(t, s, *answer.Data)
				if got.Type != "qmconfig" || got.Exit != "WARNINGS: 1" || !slices.Contains(got.Log, "WARN: "+warning) || got.Log[len(got.Log)-1] != "TASK WARNINGS: 1" {
					t.Errorf("task %+v, want qmconfig ending WARNINGS: 1 with the warning", got)
				}
				var st map[string]any
				apiData(t, "GET", base, "/nodes/pve1/tasks/"+*answer.Data+"/status", "", &st)
				if st["status"] != "stopped" || st["exitstatus"] != "WARNINGS: 1" {
					t.Errorf("task status %v", st)
				}
			} else if n := len(s.Tasks("qmconfig", 101)); n != 0 {
				t.Errorf("PUT started %d qmconfig tasks", n)
			}
			if vm, _ := s.VM("pve1", 101); vm.Cores != 2 || !slices.Equal(vm.Tags, []string{"blue"}) {
				t.Errorf("VM has cores %d, tags %v; want the other keys applied", vm.Cores, vm.Tags)
			}
		})
	}
}

func TestTaskWarningFaultWarnsAndStillMakesTheChange(t *testing.T) {
	backups := func(t *testing.T, base string, vmid int) []string {
		var list []struct{ Volid string }
		apiData(t, "GET", base, fmt.Sprintf("/nodes/pve1/storage/local/content?content=backup&vmid=%d", vmid), "", &list)
		var out []string
		for _, b := range list {
			out = append(out, b.Volid)
		}
		return out
	}
	tests := []struct {
		name, warning string
		// inject adds the fault, through Inject or the control endpoint.
		inject func(t *testing.T, s *sim.Server, base, warning string)
		// call starts the task and returns its UPID and a check of its
		// effect.
		call func(t *testing.T, base string) (string, func(*testing.T))
		typ  string
	}{
		{
			name: "vzdump", typ: "vzdump",
			warning: "unable to open file '/var/lib/vz/dump/vzdump-qemu-101.notes.tmp' - Permission denied",
			inject: func(_ *testing.T, s *sim.Server, _, w string) {
				s.Inject(simkit.Fault{Op: "vzdump", Times: 1, TaskWarning: w})
			},
			call: func(t *testing.T, base string) (string, func(*testing.T)) {
				before := len(backups(t, base, 101))
				upid := startTask(t, base, "POST", "/nodes/pve1/vzdump", "vmid=101&storage=local")
				return upid, func(t *testing.T) {
					if n := len(backups(t, base, 101)); n != before+1 {
						t.Errorf("%d backups, want %d", n, before+1)
					}
				}
			},
		},
		{
			name: "imgdel", typ: "imgdel",
			warning: "unable to delete notes file - Permission denied",
			inject: func(_ *testing.T, s *sim.Server, _, w string) {
				s.Inject(simkit.Fault{Op: "content.delete", Times: 1, TaskWarning: w})
			},
			call: func(t *testing.T, base string) (string, func(*testing.T)) {
				volid := backups(t, base, 100)[0]
				upid := startTask(t, base, "DELETE", "/nodes/pve1/storage/local/content/"+url.PathEscape(volid), "")
				return upid, func(t *testing.T) {
					if slices.Contains(backups(t, base, 100), volid) {
						t.Errorf("backup %s is still there", volid)
					}
				}
			},
		},
		{
			name: "imgdel through /_sim/faults", typ: "imgdel",
			warning: "unable to delete notes file - Permission denied",
			inject: func(t *testing.T, _ *sim.Server, base, w string) {
				b, _ := json.Marshal(map[string]any{"op": "content.delete", "times": 1, "taskWarning": w})
				res, err := http.Post(base+"/_sim/faults", "application/json", strings.NewReader(string(b)))
				if err != nil || res.StatusCode != http.StatusNoContent {
					t.Fatalf("POST /_sim/faults: %v %v", res, err)
				}
				res.Body.Close()
			},
			call: func(t *testing.T, base string) (string, func(*testing.T)) {
				volid := backups(t, base, 100)[0]
				upid := startTask(t, base, "DELETE", "/nodes/pve1/storage/local/content/"+url.PathEscape(volid), "")
				return upid, func(t *testing.T) {
					if slices.Contains(backups(t, base, 100), volid) {
						t.Errorf("backup %s is still there", volid)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := simWith(t, nil)
			tt.inject(t, s, base, tt.warning)
			upid, check := tt.call(t, base)
			got := taskEnd(t, s, upid)
			if got.Type != tt.typ || got.Exit != "WARNINGS: 1" || !slices.Contains(got.Log, "WARN: "+tt.warning) || got.Log[len(got.Log)-1] != "TASK WARNINGS: 1" {
				t.Errorf("task %+v, want %s ending WARNINGS: 1 with the warning", got, tt.typ)
			}
			check(t)
			// The fault hit one call: the next task of the kind ends OK.
			upid, _ = tt.call(t, base)
			if next := taskEnd(t, s, upid); next.Exit != "OK" {
				t.Errorf("next task ended %q, want OK", next.Exit)
			}
		})
	}
}

func TestCloneTaskIsListedUnderItsSourceAndWritesTheDescriptionLast(t *testing.T) {
	s, base := simWith(t, nil)
	const desc = "svc-42 for customer 7"
	started := time.Now()
	upid := startTask(t, base, "POST", "/nodes/pve1/qemu/101/clone", "newid=300&name=svc-42&full=1&description="+url.QueryEscape(desc))

	type entry struct {
		UPID, Type, ID, User, Status string
		Starttime, Endtime           int64
	}
	list := func(query string) []entry {
		var out []entry
		apiData(t, "GET", base, "/nodes/pve1/tasks?"+query, "", &out)
		return out
	}
	// While the full clone runs, the new VM's configuration is PVE's
	// temporary file: locked, without the description asked for.
	var cfg map[string]any
	apiData(t, "GET", base, "/nodes/pve1/qemu/300/config", "", &cfg)
	if cfg["lock"] != "clone" || cfg["description"] == desc {
		t.Errorf("config while cloning = %v, want lock clone and not yet the description", cfg)
	}
	running := list("source=active&typefilter=qmclone")
	want := entry{UPID: upid, Type: "qmclone", ID: "101", User: tokenID, Starttime: started.Unix()}
	if len(running) != 1 || !near(time.Duration(running[0].Starttime-want.Starttime)*time.Second, 0, 3*time.Second) {
		t.Fatalf("running clones %+v, want %+v", running, want)
	}
	want.Starttime = running[0].Starttime
	if running[0] != want {
		t.Errorf("running clone %+v, want %+v (the id is the source VMID, as clone_vm forks with it)", running[0], want)
	}

	task := taskEnd(t, s, upid)
	if task.Exit != "OK" || task.User != tokenID || task.ID != "101" {
		t.Errorf("clone task %+v", task)
	}
	cfg = nil // Unmarshal would merge into the old map
	apiData(t, "GET", base, "/nodes/pve1/qemu/300/config", "", &cfg)
	if cfg["lock"] != nil || cfg["description"] != desc || cfg["name"] != "svc-42" {
		t.Errorf("config after the clone = %v, want the description and no lock", cfg)
	}
	want.Status, want.Endtime = "OK", task.End.Unix()
	if done := list("typefilter=qmclone&vmid=101"); len(done) != 1 || done[0] != want {
		t.Errorf("finished clones of 101 %+v, want %+v", done, want)
	}
	if n := len(list("source=all&vmid=300")); n != 0 {
		t.Errorf("%d tasks listed for the new VM 300, want the clone under its source only", n)
	}
	if got := s.Tasks("qmclone", 101); len(got) != 1 || got[0].UPID != upid {
		t.Errorf("Tasks(qmclone, 101) = %+v", got)
	}
	if got := s.Tasks("qmclone", 300); len(got) != 0 {
		t.Errorf("Tasks(qmclone, 300) = %+v, want none", got)
	}
}
