package sim_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const (
	tokenID     = "root@pam!test"
	tokenSecret = "s3cret"
	taskTime    = 50 * time.Millisecond
)

// newSim serves a simulator with the demo VMs and returns it with a
// go-proxmox client and the server's base URL.
func newSim(t *testing.T) (*sim.Server, *pve.Client, string) {
	t.Helper()
	s := sim.New(sim.Config{TokenID: tokenID, TokenSecret: tokenSecret, TaskDuration: taskTime, Seed: 1})
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	c := pve.NewClient(ts.URL+"/api2/json", pve.WithAPIToken(tokenID, tokenSecret),
		pve.WithHTTPClient(&http.Client{Timeout: 2 * time.Second}))
	return s, c, ts.URL
}

// raw sends a request with the token and returns the status line and body.
func raw(t *testing.T, method, url, body string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "PVEAPIToken="+tokenID+"="+tokenSecret)
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.Status, string(b)
}

func waitTask(t *testing.T, c *pve.Client, upid pve.UPID) *pve.Task {
	t.Helper()
	task := pve.NewTask(upid, c)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := task.Ping(context.Background()); err != nil {
			t.Fatalf("task status: %v", err)
		}
		if task.IsCompleted {
			return task
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("task %s did not end", upid)
	return nil
}

func TestPowerTaskChangesStateWhenItEnds(t *testing.T) {
	tests := []struct {
		op, task          string
		vmid              int
		status, qmpStatus string
		before, beforeQMP string
	}{
		{"start", "qmstart", 101, "running", "running", "stopped", "stopped"},
		{"stop", "qmstop", 100, "stopped", "stopped", "running", "running"},
		{"shutdown", "qmshutdown", 100, "stopped", "stopped", "running", "running"},
		{"suspend", "qmpause", 100, "running", "paused", "running", "running"},
		{"reset", "qmreset", 100, "running", "running", "running", "running"},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			s, c, _ := newSim(t)
			ctx := context.Background()
			var upid pve.UPID
			if err := c.Post(ctx, fmt.Sprintf("/nodes/pve1/qemu/%d/status/%s", tt.vmid, tt.op), nil, &upid); err != nil {
				t.Fatal(err)
			}
			var vm pve.VirtualMachine
			if err := c.Get(ctx, fmt.Sprintf("/nodes/pve1/qemu/%d/status/current", tt.vmid), &vm); err != nil {
				t.Fatal(err)
			}
			if vm.Status != tt.before || vm.QMPStatus != tt.beforeQMP {
				t.Errorf("while the task runs: status %s/%s, want %s/%s", vm.Status, vm.QMPStatus, tt.before, tt.beforeQMP)
			}
			task := waitTask(t, c, upid)
			if !task.IsSuccessful || task.Type != tt.task || task.ID != fmt.Sprint(tt.vmid) || task.StartTime.IsZero() {
				t.Errorf("task = %+v, want a successful qm%s on %d", task, tt.op, tt.vmid)
			}
			if err := c.Get(ctx, fmt.Sprintf("/nodes/pve1/qemu/%d/status/current", tt.vmid), &vm); err != nil {
				t.Fatal(err)
			}
			if vm.Status != tt.status || vm.QMPStatus != tt.qmpStatus {
				t.Errorf("after the task: status %s/%s, want %s/%s", vm.Status, vm.QMPStatus, tt.status, tt.qmpStatus)
			}
			if n := s.CountTasks(tt.task, tt.vmid); n != 1 {
				t.Errorf("CountTasks = %d, want 1", n)
			}
		})
	}
}

func TestRefusalsUseTheRealErrorShape(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		setup                    func(*sim.Server)
		wantStatus, wantBody     string
	}{
		{name: "shutdown of a stopped VM", method: "POST", path: "/nodes/pve1/qemu/101/status/shutdown",
			wantStatus: "500 VM 101 not running"},
		{name: "locked VM", method: "POST", path: "/nodes/pve1/qemu/100/status/stop",
			setup:      func(s *sim.Server) { vm, _ := s.VM("pve1", 100); vm.Lock = "clone"; s.AddVM(vm) },
			wantStatus: "500 VM is locked (clone)"},
		{name: "unknown VM", method: "GET", path: "/nodes/pve1/qemu/555/status/current",
			wantStatus: "500 Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist"},
		{name: "VM on another node", method: "GET", path: "/nodes/pve2/qemu/100/config",
			wantStatus: "500 Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"},
		{name: "template start", method: "POST", path: "/nodes/pve1/qemu/9000/status/start",
			wantStatus: "500 you can't start a vm if it's a template"},
		{name: "malformed vmid", method: "GET", path: "/nodes/pve1/qemu/abc/status/current",
			wantStatus: "400 Parameter verification failed.", wantBody: `"vmid":"type check ('integer') failed - got 'abc'"`},
		{name: "unknown parameter", method: "POST", path: "/nodes/pve1/qemu/100/status/reset", body: "bogus=1",
			wantStatus: "400 Parameter verification failed.", wantBody: `"bogus":"property is not defined in schema`},
		{name: "non-integer timeout", method: "POST", path: "/nodes/pve1/qemu/100/status/shutdown", body: "timeout=soon",
			wantStatus: "400 Parameter verification failed.", wantBody: `"timeout":"type check ('integer') failed - got 'soon'"`},
		{name: "unknown method", method: "POST", path: "/nodes/pve1/qemu/100/status/explode",
			wantStatus: "501 Method 'POST /nodes/pve1/qemu/100/status/explode' not implemented"},
		{name: "malformed UPID", method: "GET", path: "/nodes/pve1/tasks/UPID:nope/status",
			wantStatus: "400 Parameter verification failed.", wantBody: `"upid":"unable to parse worker upid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, url := newSim(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			status, body := raw(t, tt.method, url+"/api2/json"+tt.path, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status line %q, want %q", status, tt.wantStatus)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %s, want it to contain %s", body, tt.wantBody)
			}
		})
	}
}

func TestBadTokenIsUnauthorized(t *testing.T) {
	_, _, url := newSim(t)
	c := pve.NewClient(url+"/api2/json", pve.WithAPIToken(tokenID, "wrong"))
	_, err := c.Version(context.Background())
	if !errors.Is(err, pve.ErrNotAuthorized) {
		t.Fatalf("err = %v, want ErrNotAuthorized", err)
	}
}

func TestScriptedStatusFaultHitsTheNextCallsOnly(t *testing.T) {
	s, c, _ := newSim(t)
	s.Inject(simkit.Fault{Op: "start", Target: "101", Times: 2, Status: 500, Message: "got timeout"})
	ctx := context.Background()
	var upid pve.UPID
	for i := range 2 {
		err := c.Post(ctx, "/nodes/pve1/qemu/101/status/start", nil, &upid)
		if err == nil || err.Error() != "500 got timeout" {
			t.Fatalf("call %d: err = %v, want 500 got timeout", i+1, err)
		}
	}
	if err := c.Post(ctx, "/nodes/pve1/qemu/101/status/start", nil, &upid); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if got, want := [2]int{s.CountCalls("start", "101"), s.CountTasks("qmstart", 101)}, [2]int{3, 1}; got != want {
		t.Errorf("calls, tasks = %v, want %v", got, want)
	}
}

func TestTaskErrorFaultEndsTheTaskWithoutItsEffect(t *testing.T) {
	s, c, _ := newSim(t)
	s.Inject(simkit.Fault{Op: "start", Times: 1, TaskError: "start failed: QEMU exited with code 1"})
	var upid pve.UPID
	if err := c.Post(context.Background(), "/nodes/pve1/qemu/101/status/start", nil, &upid); err != nil {
		t.Fatal(err)
	}
	task := waitTask(t, c, upid)
	if !task.IsFailed || task.ExitStatus != "start failed: QEMU exited with code 1" {
		t.Errorf("task ended %q (failed %v)", task.ExitStatus, task.IsFailed)
	}
	if vm, _ := s.VM("pve1", 101); vm.Status != "stopped" {
		t.Errorf("VM is %s, want stopped", vm.Status)
	}
}

func TestDropCarriesTheCallOutButLosesTheAnswer(t *testing.T) {
	s, c, _ := newSim(t)
	s.Inject(simkit.Fault{Op: "stop", Times: 1, Drop: true})
	var upid pve.UPID
	if err := c.Post(context.Background(), "/nodes/pve1/qemu/100/status/stop", nil, &upid); err == nil {
		t.Fatal("the dropped call succeeded")
	}
	if n := s.CountTasks("qmstop", 100); n != 1 {
		t.Errorf("CountTasks = %d, want the stop carried out once", n)
	}
	tasks, err := (&pve.Node{}).New(c, "pve1").Tasks(context.Background(), &pve.NodeTasksOptions{Source: "active", VMID: 100, TypeFilter: "qmstop"})
	if err != nil || len(tasks) != 1 {
		t.Fatalf("active qmstop tasks = %d, %v; want the dropped call's task", len(tasks), err)
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	s, c, _ := newSim(t)
	s.Inject(simkit.Fault{Op: "version", Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Version(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
}

func TestRetryAfterHeaderIsSent(t *testing.T) {
	s, _, url := newSim(t)
	s.Inject(simkit.Fault{Op: "nodes", Status: 429, RetryAfter: 3 * time.Second})
	req, _ := http.NewRequest("GET", url+"/api2/json/nodes", nil)
	req.Header.Set("Authorization", "PVEAPIToken="+tokenID+"="+tokenSecret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "3" {
		t.Errorf("got %d with Retry-After %q, want 429 with 3", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

func TestRandomFaultsRepeatWithTheSameSeed(t *testing.T) {
	outcomes := func() string {
		s, _, url := newSim(t)
		s.SetRandomFaults(simkit.RandomFaults{Rate: 0.3})
		var b strings.Builder
		for range 40 {
			// go-proxmox takes a 503 for success, so the status line is read.
			if status, _ := raw(t, "GET", url+"/api2/json/version", ""); status != "200 OK" {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	first, second := outcomes(), outcomes()
	if first != second || !strings.Contains(first, "x") || !strings.Contains(first, ".") {
		t.Errorf("runs %s and %s: want the same mix of failures and successes", first, second)
	}
}

func TestIgnoredShutdownFailsAfterItsTimeout(t *testing.T) {
	s, c, _ := newSim(t)
	vm, _ := s.VM("pve1", 100)
	vm.IgnoresShutdown = true
	s.AddVM(vm)
	var upid pve.UPID
	if err := c.Post(context.Background(), "/nodes/pve1/qemu/100/status/shutdown", map[string]any{"timeout": 1}, &upid); err != nil {
		t.Fatal(err)
	}
	task := waitTask(t, c, upid)
	if task.ExitStatus != "VM quit/powerdown failed - got timeout" {
		t.Errorf("exit status %q", task.ExitStatus)
	}
	if vm, _ := s.VM("pve1", 100); vm.Status != "running" {
		t.Errorf("VM is %s, want still running", vm.Status)
	}
}

func TestTaskListFilters(t *testing.T) {
	_, c, _ := newSim(t)
	ctx := context.Background()
	since := time.Now().Add(-time.Second).Unix()
	var first, second pve.UPID
	if err := c.Post(ctx, "/nodes/pve1/qemu/101/status/start", nil, &first); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, first)
	if err := c.Post(ctx, "/nodes/pve1/qemu/100/status/suspend", nil, &second); err != nil {
		t.Fatal(err)
	}
	node := (&pve.Node{}).New(c, "pve1")
	tests := []struct {
		name string
		opts pve.NodeTasksOptions
		want []pve.UPID
	}{
		{"active only", pve.NodeTasksOptions{Source: "active"}, []pve.UPID{second}},
		{"archive is the default", pve.NodeTasksOptions{Limit: 10}, []pve.UPID{first}},
		{"all, newest first", pve.NodeTasksOptions{Source: "all"}, []pve.UPID{second, first}},
		{"by vmid", pve.NodeTasksOptions{Source: "all", VMID: 101}, []pve.UPID{first}},
		{"by type", pve.NodeTasksOptions{Source: "all", TypeFilter: "qmpause"}, []pve.UPID{second}},
		{"since in the future", pve.NodeTasksOptions{Source: "all", Since: since + 3600}, nil},
		{"since", pve.NodeTasksOptions{Source: "all", Since: since}, []pve.UPID{second, first}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tasks, err := node.Tasks(ctx, &tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []pve.UPID
			for _, task := range tasks {
				got = append(got, task.UPID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStoppedTaskIsInterrupted(t *testing.T) {
	s, c, _ := newSim(t)
	var upid pve.UPID
	if err := c.Post(context.Background(), "/nodes/pve1/qemu/101/status/start", nil, &upid); err != nil {
		t.Fatal(err)
	}
	task := pve.NewTask(upid, c)
	if err := task.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if task = waitTask(t, c, upid); task.ExitStatus != "interrupted by signal" {
		t.Errorf("exit status %q", task.ExitStatus)
	}
	time.Sleep(2 * taskTime)
	if vm, _ := s.VM("pve1", 101); vm.Status != "stopped" {
		t.Errorf("VM is %s, want stopped", vm.Status)
	}
}
