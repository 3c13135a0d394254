package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	pterosim "github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
	tenantossim "github.com/hostfleet/provisiond/adapters/tenantos/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/contract"
)

// TestMain lets a test start this binary as the real provisiond, for tests
// that kill a worker process.
func TestMain(m *testing.M) {
	if os.Getenv("PROVISIOND_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// system is the whole fleet on real PostgreSQL and Redis: the API on a test
// server, workers, the Proxmox simulator seeded with the demo VMs and the
// Tenantos one seeded with the demo servers.
type system struct {
	t        *testing.T
	sim      *sim.Server
	ptero    *pterosim.Server
	tenantos *tenantossim.Server
	// tenantosURL is the Tenantos simulator's base URL.
	tenantosURL string
	// logs holds what this process's fleet logged (not a child worker's).
	logs *logBuffer
	env  map[string]string // the configuration, as environment variables
	api  string
	q    *queries.Queries
	db   *pgxpool.Pool
	jobs *jobs.Client
	app  *app
	// key is the demo team's; platformKey the platform's (see do).
	key, platformKey string
	// client holds every request and answer to the OpenAPI description.
	client   *http.Client
	services map[string]queries.Service // by name: web-1 (running), db-1 (stopped), game-1
	stop     func()
}

type systemOpts struct {
	taskDuration time.Duration
	// env overrides the configuration.
	env map[string]string
	// clock, when set, is the API's clock for cancellations and renewals.
	clock func() time.Time
	// noWorker leaves job processing to the test.
	noWorker bool
	// webhookCAs are trusted for webhook deliveries.
	webhookCAs *x509.CertPool
	// installDuration is how long a Tenantos install runs; default four
	// task durations.
	installDuration time.Duration
	// consoleTTL is how long a Tenantos console session lasts; default the
	// simulator's.
	consoleTTL time.Duration
}

// tenantosKey is the Tenantos simulator's API key.
const tenantosKey = "tenantos-test-key"

// logBuffer keeps log output for tests that search it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// teeLogger logs to the test and to logs.
func teeLogger(t *testing.T, logs *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(logs, testLog{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newSystem(t *testing.T, opts systemOpts) *system {
	t.Helper()
	_, dbURL := jobtest.DB(t)
	ropt := jobtest.Redis(t)
	if opts.taskDuration == 0 {
		opts.taskDuration = 50 * time.Millisecond
	}
	pve := sim.New(sim.Config{TokenID: "root@pam!test", TokenSecret: "s3cret", Password: "console-pw", TaskDuration: opts.taskDuration, Seed: 7})
	for _, vm := range sim.DemoVMs() {
		pve.AddVM(vm)
	}
	simSrv := httptest.NewServer(pve)
	ptero := pterosim.New(pterosim.Config{ApplicationKeys: []string{"ptla_test"}, ClientKeys: map[string]int{"ptlc_test": 1},
		TaskDuration: opts.taskDuration, InstallDuration: 2 * opts.taskDuration, ConsoleInterval: 50 * time.Millisecond, StatsInterval: 200 * time.Millisecond, Seed: 7})
	pteroSrv := httptest.NewServer(ptero)
	if opts.installDuration == 0 {
		opts.installDuration = 4 * opts.taskDuration
	}
	tos := tenantossim.New(tenantossim.Config{APIKeys: []string{tenantosKey}, TaskDuration: opts.taskDuration,
		InstallDuration: opts.installDuration, ConsoleTTL: opts.consoleTTL, TrustForwardedFor: true, Seed: 7})
	for _, m := range tenantossim.DemoServers() {
		tos.AddServer(m)
	}
	tosSrv := httptest.NewServer(tos)
	s := &system{t: t, sim: pve, ptero: ptero, tenantos: tos, tenantosURL: tosSrv.URL, logs: &logBuffer{}, env: map[string]string{
		"DATABASE_URL": dbURL, "DATABASE_MAX_CONNS": "8",
		"REDIS_ADDR": ropt.Addr, "REDIS_DB": fmt.Sprint(ropt.DB),
		"HTTP_ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0", "LOG_FORMAT": "text", "LOG_LEVEL": "debug",
		"API_RATE_LIMIT": "10000", "OPERATOR_PASSWORD": "op",
		"SECRETS_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "CANCEL_GRACE": "2s",
		"PROXMOX_URL": simSrv.URL + "/api2/json", "PROXMOX_TOKEN_ID": "root@pam!test", "PROXMOX_TOKEN_SECRET": "s3cret",
		"PROXMOX_REQUEST_TIMEOUT": "3s", "PROXMOX_POLL_INTERVAL": "20ms",
		"PROXMOX_CONSOLE_USER": "root@pam", "PROXMOX_CONSOLE_PASSWORD": "console-pw",
		"PTERODACTYL_URL": pteroSrv.URL, "PTERODACTYL_APPLICATION_KEY": "ptla_test", "PTERODACTYL_CLIENT_KEY": "ptlc_test",
		"PTERODACTYL_POLL_INTERVAL": "20ms",
		"TENANTOS_URL":              tosSrv.URL, "TENANTOS_API_KEY": tenantosKey, "TENANTOS_POLL_INTERVAL": "20ms",
		"TENANTOS_REQUEST_TIMEOUT": "3s", "TENANTOS_POOL_TAGS": "For Rent", "TENANTOS_WIPE_PROFILE": "20",
		"WORKER_CONCURRENCY": "10", "JOB_RETRY_BASE": "50ms", "JOB_RETRY_MAX": "200ms",
		"SHUTDOWN_TIMEOUT": "2s", "POWER_SHUTDOWN_TIMEOUT": "5s",
	}}
	maps.Copy(s.env, opts.env)
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: s.env}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, teeLogger(t, s.logs))
	if err != nil {
		t.Fatal(err)
	}
	a.now, a.webhookCAs = opts.clock, opts.webhookCAs
	s.q, s.db, s.jobs, s.app = a.q, a.pool, a.jobClient(), a
	px, err := a.proxmox()
	if err != nil {
		t.Fatal(err)
	}
	keys, services, err := seedDemo(ctx, a.q, px, sim.DemoVMs(), sim.DemoVMs())
	if err != nil {
		t.Fatal(err)
	}
	s.key, s.platformKey, s.services = keys.Team, keys.Platform, map[string]queries.Service{}
	for _, svc := range services {
		s.services[svc.Name] = svc
	}
	h, err := a.apiHandler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(h)
	s.api = apiSrv.URL
	doc, err := contract.Load(ctx, web.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := contract.NewChecker(doc, nil, func(err error) { t.Errorf("contract: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	s.client = checker.Client()
	var wg sync.WaitGroup
	if !opts.noWorker {
		srv, handler, err := a.workers()
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := runAsynq(ctx, srv, handler, a.log); err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			apiSrv.Close()
			pve.Close() // first: it releases hung calls
			simSrv.Close()
			ptero.Close()
			pteroSrv.Close()
			tos.Close()
			tosSrv.Close()
			a.close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

// startChildWorker runs `provisiond worker` as a child process and returns
// a function that kills it with SIGKILL and says when.
func (s *system) startChildWorker() func() time.Time {
	s.t.Helper()
	var out bytes.Buffer
	child := exec.Command(os.Args[0], "worker")
	child.Env = append(os.Environ(), "PROVISIOND_RUN_MAIN=1")
	for k, v := range s.env {
		child.Env = append(child.Env, k+"="+v)
	}
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		child.Process.Kill()
		child.Wait()
		if s.t.Failed() {
			s.t.Logf("first worker's output:\n%s", out.String())
		}
	})
	return func() time.Time {
		s.t.Helper()
		if err := child.Process.Kill(); err != nil {
			s.t.Fatal(err)
		}
		child.Wait()
		return time.Now()
	}
}

// takeOver starts a second worker once asynq will hand it the task a worker
// killed at killed held: after the 30 s lease and asynq's 30 s allowance for
// clock skew (its recoverer runs when a worker starts).
func (s *system) takeOver(killed time.Time) {
	s.t.Helper()
	time.Sleep(time.Until(killed.Add(61 * time.Second)))
	s.startWorker()
}

// startWorker runs a worker in this process until the test ends.
func (s *system) startWorker() {
	s.t.Helper()
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: s.env}); err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, teeLogger(s.t, s.logs).With("worker", 2))
	if err != nil {
		s.t.Fatal(err)
	}
	srv, handler, err := a.workers()
	if err != nil {
		s.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { runAsynq(ctx, srv, handler, a.log) })
	s.t.Cleanup(func() { cancel(); wg.Wait(); a.close() })
}

// do calls the API as the demo team does, and as the platform (the
// checkout, billing) for what only a platform key may do: a new service
// (for the demo team), a renewal, a suspension or its end. It decodes the
// answer.
func (s *system) do(method, path, body string) (int, map[string]any) {
	s.t.Helper()
	key := s.key
	if web.PlatformRequest(method, path, []byte(body)) {
		key = s.platformKey
		if path == "/api/services" {
			var m map[string]any
			if json.Unmarshal([]byte(body), &m) == nil && m["teamId"] == nil {
				m["teamId"] = s.services["web-1"].TeamID
				b, _ := json.Marshal(m)
				body = string(b)
			}
		}
	}
	return s.doWith(key, method, path, body)
}

// doWith calls the API with key and decodes the answer.
func (s *system) doWith(key, method, path, body string) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.api+path, strings.NewReader(body))
	req.Header.Set("x-api-key", key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("%s %s: answer is not JSON (%d): %q", method, path, res.StatusCode, raw)
	}
	return res.StatusCode, out
}

// action asks for a power action and returns the job's id.
func (s *system) action(service, action string) string {
	s.t.Helper()
	status, body := s.do("POST", "/api/services/"+s.services[service].ID.String()+"/action", `{"action":"`+action+`"}`)
	if status != http.StatusAccepted {
		s.t.Fatalf("%s on %s: status %d, want 202: %v", action, service, status, body)
	}
	return body["job"].(map[string]any)["id"].(string)
}

// job reads a job through the API.
func (s *system) job(id string) map[string]any {
	s.t.Helper()
	status, body := s.do("GET", "/api/jobs/"+id, "")
	if status != http.StatusOK {
		s.t.Fatalf("GET job: status %d: %v", status, body)
	}
	return body["job"].(map[string]any)
}

// waitJob waits until the job has ended and returns it.
func (s *system) waitJob(id string, timeout time.Duration) map[string]any {
	s.t.Helper()
	var job map[string]any
	jobtest.Eventually(s.t, timeout, "job "+id+" to end", func() bool {
		job = s.job(id)
		switch job["status"] {
		case "succeeded", "failed", "cancelled":
			return true
		}
		return false
	})
	return job
}

// vm returns the simulated VM behind a demo service.
func (s *system) vm(service string) sim.VM {
	s.t.Helper()
	var ref struct {
		Node string
		VMID int
	}
	json.Unmarshal(s.services[service].ProviderRef, &ref)
	vm, ok := s.sim.VM(ref.Node, ref.VMID)
	if !ok {
		s.t.Fatalf("no VM behind %s", service)
	}
	return vm
}

// statuses lists the job's status changes as its events recorded them.
func (s *system) statuses(id string) string {
	s.t.Helper()
	events, err := s.q.ListJobEvents(context.Background(), queries.ListJobEventsParams{JobID: uuid.MustParse(id)})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		if len(out) == 0 || out[len(out)-1] != e.Status {
			out = append(out, e.Status)
		}
	}
	return strings.Join(out, " → ")
}

func TestPowerActionsGoFromAPIToTheVM(t *testing.T) {
	tests := []struct {
		service, action string
		setup           func(*system)
		tasks           []string // tasks the simulator must have run once each
		vmStatus        string
		paused          bool
		powerState      string
		serviceStatus   string
	}{
		{service: "db-1", action: "start", tasks: []string{"qmstart"}, vmStatus: "running", powerState: "running", serviceStatus: "active"},
		{service: "web-1", action: "stop", tasks: []string{"qmstop"}, vmStatus: "stopped", powerState: "stopped", serviceStatus: "active"},
		{service: "web-1", action: "restart", tasks: []string{"qmshutdown", "qmstart"}, vmStatus: "running", powerState: "running", serviceStatus: "active"},
		{service: "web-1", action: "reset", tasks: []string{"qmreset"}, vmStatus: "running", powerState: "running", serviceStatus: "active"},
		{service: "db-1", action: "reset", tasks: []string{"qmstart"}, vmStatus: "running", powerState: "running", serviceStatus: "active"},
		{service: "web-1", action: "suspend", tasks: []string{"qmpause"}, vmStatus: "running", paused: true, powerState: "paused", serviceStatus: "suspended"},
		{service: "web-1", action: "resume", tasks: []string{"qmresume"}, vmStatus: "running", powerState: "running", serviceStatus: "active",
			setup: func(s *system) { vm := s.vm("web-1"); vm.Paused = true; s.sim.AddVM(vm) }},
		{service: "web-1", action: "restart", tasks: []string{"qmshutdown", "qmstop", "qmstart"}, vmStatus: "running", powerState: "running", serviceStatus: "active",
			setup: func(s *system) { vm := s.vm("web-1"); vm.IgnoresShutdown = true; s.sim.AddVM(vm) }},
	}
	for _, tt := range tests {
		name := tt.action + " " + tt.service
		if tt.setup != nil {
			name += " (special)"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{})
			if tt.setup != nil {
				tt.setup(s)
			}
			id := s.action(tt.service, tt.action)
			job := s.waitJob(id, 20*time.Second)
			if job["status"] != "succeeded" {
				t.Fatalf("job ended %s: %v", job["status"], job["error"])
			}
			if got := s.statuses(id); got != "queued → running → succeeded" {
				t.Errorf("job went %s", got)
			}
			if r, _ := job["result"].(map[string]any); r["powerState"] != tt.powerState {
				t.Errorf("result %v, want powerState %s", job["result"], tt.powerState)
			}
			for _, typ := range tt.tasks {
				if n := s.sim.CountTasks(typ, 0); n != 1 {
					t.Errorf("%s ran %d times, want once", typ, n)
				}
			}
			if vm := s.vm(tt.service); vm.Status != tt.vmStatus || vm.Paused != tt.paused {
				t.Errorf("VM is %s (paused %v), want %s (paused %v)", vm.Status, vm.Paused, tt.vmStatus, tt.paused)
			}
			_, body := s.do("GET", "/api/services/"+s.services[tt.service].ID.String(), "")
			svc := body["service"].(map[string]any)
			if svc["powerState"] != tt.powerState || svc["status"] != tt.serviceStatus {
				t.Errorf("service is %v/%v, want %s/%s", svc["status"], svc["powerState"], tt.serviceStatus, tt.powerState)
			}
		})
	}
}

func TestProviderOutageIsRetriedWithoutRepeatingTheAction(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	s.sim.Inject(simkit.Fault{Op: "start", Times: 2, Status: 500, Message: "proxy loop detected"})
	id := s.action("db-1", "start")
	job := s.waitJob(id, 20*time.Second)
	if job["status"] != "succeeded" || job["attempts"] != 3.0 {
		t.Fatalf("job %s after %v attempts, want succeeded after 3: %v", job["status"], job["attempts"], job["error"])
	}
	if calls, tasks := s.sim.CountCalls("start", "101"), s.sim.CountTasks("qmstart", 101); calls != 3 || tasks != 1 {
		t.Errorf("start calls %d, tasks %d; want 3 calls and one task", calls, tasks)
	}
	if got := s.statuses(id); got != "queued → running → retrying → running → retrying → running → succeeded" {
		t.Errorf("job went %s", got)
	}
}

func TestLostAnswerDoesNotRepeatTheAction(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	// The stop happens but its answer never arrives; the retry must find
	// the task instead of stopping again.
	s.sim.Inject(simkit.Fault{Op: "stop", Times: 1, Drop: true})
	id := s.action("web-1", "stop")
	job := s.waitJob(id, 20*time.Second)
	// The attempt that lost the answer may find its task itself (when PVE
	// lists it by then) or leave it to the next attempt: either way once.
	if attempts, _ := job["attempts"].(float64); job["status"] != "succeeded" || attempts > 2 {
		t.Fatalf("job %s after %v attempts, want succeeded within 2: %v", job["status"], job["attempts"], job["error"])
	}
	if n := s.sim.CountTasks("qmstop", 100); n != 1 {
		t.Errorf("qmstop ran %d times, want once", n)
	}
}

func TestProviderRefusalFailsTheJobAtOnce(t *testing.T) {
	tests := []struct {
		name    string
		fault   simkit.Fault
		wantErr string
	}{
		{"400 from the API", simkit.Fault{Op: "start", Status: 400, Message: "Parameter verification failed."},
			"Parameter verification failed."},
		{"task ends in error", simkit.Fault{Op: "start", TaskError: "start failed: QEMU exited with code 1"},
			"start failed: QEMU exited with code 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{})
			s.sim.Inject(tt.fault)
			id := s.action("db-1", "start")
			job := s.waitJob(id, 20*time.Second)
			if job["status"] != "failed" || job["attempts"] != 1.0 {
				t.Fatalf("job %s after %v attempts, want failed after 1", job["status"], job["attempts"])
			}
			if msg, _ := job["error"].(string); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q, want it to say %q", msg, tt.wantErr)
			}
			if n := s.sim.CountCalls("start", "101"); n != 1 {
				t.Errorf("start was called %d times, want once", n)
			}
		})
	}
}

func TestCancelRunningJobStopsAtTheStep(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: time.Second})
	id := s.startJob("POST", "/api/services/"+s.services["web-1"].ID.String()+"/backups", "")
	jobtest.Eventually(t, 10*time.Second, "the backup task to start", func() bool {
		return s.sim.CountTasks("vzdump", 100) == 1
	})
	status, body := s.do("POST", "/api/jobs/"+id+"/cancel", "")
	if status != http.StatusAccepted && status != http.StatusOK {
		t.Fatalf("cancel: status %d: %v", status, body)
	}
	job := s.waitJob(id, 10*time.Second)
	if job["status"] != "cancelled" || job["step"] != "backup" || !strings.Contains(fmt.Sprint(job["error"]), "backup") {
		t.Fatalf("job %s at step %v (%v), want cancelled at backup", job["status"], job["step"], job["error"])
	}
	if tasks := s.sim.Tasks("vzdump", 100); len(tasks) != 1 || tasks[0].Exit != "interrupted by signal" {
		t.Errorf("vzdump tasks %+v, want the one stopped", tasks)
	}
	// The node's backup slot was given up: the next backup there runs.
	s.runJob("POST", "/api/services/"+s.services["db-1"].ID.String()+"/backups", "")
}

func TestRestartCancelledDuringItsShutdownStartsTheVMAgain(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: time.Second})
	vm := s.vm("web-1")
	vm.IgnoresShutdown = true // the shutdown task runs for ten task durations
	s.sim.AddVM(vm)
	id := s.action("web-1", "restart")
	jobtest.Eventually(t, 10*time.Second, "the shutdown task to start", func() bool {
		return s.sim.CountTasks("qmshutdown", 100) == 1
	})
	status, body := s.do("POST", "/api/jobs/"+id+"/cancel", "")
	if status != http.StatusConflict || body["errorKey"] != "job_committed" {
		t.Fatalf("cancel: status %d: %v; want 409 job_committed", status, body)
	}
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("job %s (%v), want the restart carried through", job["status"], job["error"])
	}
	if vm := s.vm("web-1"); vm.Status != "running" {
		t.Errorf("VM is %s after the restart, want running", vm.Status)
	}
}

// TestCrashedWorkerResumesWithoutRepeatingTheAction kills a worker process
// with SIGKILL in the middle of a restart and lets another worker take the
// job over once asynq finds its lease expired (about a minute: the 30 s
// lease plus asynq's 30 s allowance for clock skew). The cases run in
// parallel, so the minute is spent once.
func TestCrashedWorkerResumesWithoutRepeatingTheAction(t *testing.T) {
	tests := []struct {
		name  string
		fault simkit.Fault
		// killWhen is true once the worker should die.
		killWhen func(*sim.Server) bool
		step     string // where the job stands after the crash
	}{
		{
			name:     "while the shutdown task runs",
			killWhen: func(p *sim.Server) bool { return p.CountTasks("qmshutdown", 100) == 1 },
			step:     "shutdown",
		},
		{
			name:     "between shutdown and start",
			fault:    simkit.Fault{Op: "start", Target: "100", Times: 1, Hang: true},
			killWhen: func(p *sim.Server) bool { return p.CountCalls("start", "100") == 1 },
			step:     "start",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{noWorker: true, taskDuration: 2 * time.Second})
			if tt.fault.Op != "" {
				s.sim.Inject(tt.fault)
			}
			kill := s.startChildWorker()
			id := s.action("web-1", "restart")
			jobtest.Eventually(t, 20*time.Second, "the moment to kill the worker", func() bool { return tt.killWhen(s.sim) })
			killed := kill()
			if job := s.job(id); job["status"] != "running" || job["step"] != tt.step {
				t.Fatalf("after the crash the job is %v at %v, want running at %s", job["status"], job["step"], tt.step)
			}
			s.takeOver(killed)
			job := s.waitJob(id, 30*time.Second)
			if job["status"] != "succeeded" || job["attempts"] != 2.0 {
				t.Fatalf("job %s after %v attempts, want succeeded after 2: %v", job["status"], job["attempts"], job["error"])
			}
			if n := s.sim.CountCalls("shutdown", "100"); n != 1 {
				t.Errorf("shutdown was asked for %d times, want once", n)
			}
			for _, typ := range []string{"qmshutdown", "qmstart"} {
				if n := s.sim.CountTasks(typ, 100); n != 1 {
					t.Errorf("%s ran %d times, want once", typ, n)
				}
			}
			if vm := s.vm("web-1"); vm.Status != "running" {
				t.Errorf("VM is %s, want running", vm.Status)
			}
		})
	}
}
