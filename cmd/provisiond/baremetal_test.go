package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/hostfleet/provisiond/adapters/simkit"
	tenantossim "github.com/hostfleet/provisiond/adapters/tenantos/sim"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web/apikey"
)

// Bare-metal services (provider tenantos) end to end: the API, the
// workers and the Tenantos simulator seeded with its demo servers (1 and 3
// "For Rent", 2 and 4 rented).

// bmOrder is a bare-metal order installing Debian 12 (profile 1) with the
// root password pw; plan is the order's plan.
func bmOrder(pw string, plan map[string]any) string {
	if plan == nil {
		plan = map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"name": "bm", "provider": "tenantos", "plan": plan,
		"profileId": 1, "rootPassword": pw, "hostname": "bm1.example.com"})
	return string(b)
}

// bareMetal orders a bare-metal service, waits until it is active and
// returns its API path and its Tenantos server.
func (s *system) bareMetal(order string) (string, int) {
	s.t.Helper()
	svc, id := s.provision(order)
	job := s.waitJob(id, 30*time.Second)
	if job["status"] != "succeeded" {
		s.t.Fatalf("bare-metal provision ended %s: %v", job["status"], job["error"])
	}
	server, _ := job["result"].(map[string]any)["serverId"].(float64)
	if server <= 0 {
		s.t.Fatalf("provision result %v: want the server's id", job["result"])
	}
	return "/api/services/" + svc, int(server)
}

// tosServer reads a simulated Tenantos server.
func (s *system) tosServer(id int) tenantossim.Machine {
	s.t.Helper()
	m, ok := s.tenantos.Server(id)
	if !ok {
		s.t.Fatalf("no Tenantos server %d", id)
	}
	return m
}

// tosInstall reads a server's last install straight from the simulator,
// as Tenantos' getInstallStatus shows it.
func (s *system) tosInstall(id int) map[string]any {
	s.t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/servers/%d/provisioning/getInstallStatus", s.tenantosURL, id), nil)
	req.Header.Set("Authorization", "Bearer "+tenantosKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Result map[string]any `json:"result"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK {
		s.t.Fatalf("getInstallStatus of server %d: %d %v", id, res.StatusCode, err)
	}
	return out.Result
}

// serviceIDOf is the service id at the end of an API path.
func serviceIDOf(path string) string { return path[strings.LastIndex(path, "/")+1:] }

// mark is the tag that marks a server as the service's.
func mark(path string) string { return "provisiond-service:" + serviceIDOf(path) }

// hasMark reports whether the server carries any service's mark.
func hasMark(m tenantossim.Machine) bool {
	return slices.ContainsFunc(m.Tags, func(t string) bool { return strings.HasPrefix(t, "provisiond-service:") })
}

func hasIP(m tenantossim.Machine, ip string) bool {
	return slices.ContainsFunc(m.IPs, func(a tenantossim.IPAssignment) bool { return a.IP == ip })
}

// doHeader calls the API as the demo team with extra headers.
func (s *system) doHeader(method, path, body string, hdr map[string]string) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.api+path, strings.NewReader(body))
	req.Header.Set("x-api-key", s.key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
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

// get reads path and expects 200.
func (s *system) get(path string) map[string]any {
	s.t.Helper()
	status, resp := s.do("GET", path, "")
	if status != http.StatusOK {
		s.t.Fatalf("GET %s: %d %v", path, status, resp)
	}
	return resp
}

func TestBareMetalEveryOperationSucceedsThroughTheRealPath(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	const extraIP = "10.10.20.5"
	path, server := s.bareMetal(bmOrder("provision pw 1", map[string]any{
		"ips": []map[string]any{{"ip": extraIP, "cidr": 24, "gateway": "10.10.20.1"}}}))

	t.Run("provision takes a server from the pool and installs it", func(t *testing.T) {
		m := s.tosServer(server)
		if server != 1 && server != 3 {
			t.Errorf("took server %d, want one of the pool's (1 or 3)", server)
		}
		if !slices.Contains(m.Tags, mark(path)) || slices.Contains(m.Tags, "For Rent") {
			t.Errorf("server tags %q: want the service's mark and no \"For Rent\"", m.Tags)
		}
		if m.OS != "Debian 12" || m.Hostname != "bm1.example.com" || m.Power != "online" {
			t.Errorf("server runs %q as %q, power %s; want Debian 12 as bm1.example.com, online", m.OS, m.Hostname, m.Power)
		}
		if !hasIP(m, extraIP) {
			t.Errorf("server addresses %+v: want the plan's %s", m.IPs, extraIP)
		}
		if n := s.tenantos.CountInstalls(server); n != 1 {
			t.Errorf("%d installs started, want 1", n)
		}
		if svc := s.get(path)["service"].(map[string]any); svc["status"] != "active" {
			t.Errorf("service is %v, want active", svc["status"])
		}
	})

	t.Run("bare-metal shows the server", func(t *testing.T) {
		srv, _ := s.get(path + "/bare-metal")["server"].(map[string]any)
		if srv["serverId"] != float64(server) || srv["os"] != "Debian 12" {
			t.Errorf("server %v: want server %d running Debian 12", srv, server)
		}
	})

	t.Run("profiles lists the OS and rescue profiles", func(t *testing.T) {
		var ids []float64
		for _, p := range s.get(path + "/bare-metal/profiles")["profiles"].([]any) {
			ids = append(ids, p.(map[string]any)["id"].(float64))
		}
		if !slices.Contains(ids, 1) || !slices.Contains(ids, 10) {
			t.Errorf("profiles %v: want 1 (Debian) and 10 (rescue)", ids)
		}
	})

	t.Run("reinstall installs the new profile", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"profileId": 2, "diskLayoutId": 4, "rootPassword": "reinstall pw 1",
			"sshKeys": []string{sshKey(t)}, "hostname": "bm2.example.com", "runScripts": []int{2},
			"configureAllIpv4": true, "configureAllIpv6": false, "installPowerAction": "restartAndPxeBoot"})
		s.runJob("POST", path+"/bare-metal/reinstall", string(body))
		if m := s.tosServer(server); m.OS != "Ubuntu 24.04" || m.Hostname != "bm2.example.com" || m.Power != "online" {
			t.Errorf("after the reinstall the server runs %q as %q, %s; want Ubuntu 24.04 as bm2.example.com, online", m.OS, m.Hostname, m.Power)
		}
		if n := s.tenantos.CountInstalls(server); n != 2 {
			t.Errorf("%d installs started, want 2", n)
		}
	})

	t.Run("rescue on gives the password once, off leaves it", func(t *testing.T) {
		job := s.runJob("POST", path+"/bare-metal/rescue", `{"profileId":10,"message":"locked out"}`)
		secrets, _ := job["secrets"].(map[string]any)
		if pw, _ := secrets["password"].(string); pw == "" {
			t.Errorf("rescue job secrets %v: want the generated password", job["secrets"])
		}
		if again := s.job(job["id"].(string)); again["secrets"] != nil {
			t.Errorf("second read of the rescue job shows secrets %v; want them shown once", again["secrets"])
		}
		if m := s.tosServer(server); !m.Rescue {
			t.Error("the server does not run the rescue system")
		}
		if st := s.get(path + "/bare-metal")["server"].(map[string]any); st["rescue"] != true {
			t.Errorf("bare-metal shows rescue %v, want true", st["rescue"])
		}
		s.runJob("DELETE", path+"/bare-metal/rescue", "")
		if m := s.tosServer(server); m.Rescue || m.Power != "online" {
			t.Errorf("after leaving rescue: rescue %v, power %s; want false, online", m.Rescue, m.Power)
		}
	})

	for _, tt := range []struct {
		path, body, power, powerState, call string
	}{
		{"/bare-metal/power", `{"action":"off"}`, "offline", "stopped", "power.setPowerOff"},
		{"/bare-metal/power", `{"action":"on"}`, "online", "running", "power.setPowerOn"},
		{"/bare-metal/power", `{"action":"reset"}`, "online", "running", "power.setPowerReset"},
		{"/bare-metal/power", `{"action":"cycle"}`, "online", "running", "power.setPowerCycle"},
		{"/action", `{"action":"stop"}`, "offline", "stopped", "power.setPowerOff"},
		{"/action", `{"action":"start"}`, "online", "running", "power.setPowerOn"},
	} {
		t.Run("power "+tt.path+" "+tt.body, func(t *testing.T) {
			before := s.tenantos.CountCalls(tt.call, strconv.Itoa(server))
			s.runJob("POST", path+tt.path, tt.body)
			if n := s.tenantos.CountCalls(tt.call, strconv.Itoa(server)) - before; n != 1 {
				t.Errorf("%s called %d times, want once", tt.call, n)
			}
			if m := s.tosServer(server); m.Power != tt.power {
				t.Errorf("server is %s, want %s", m.Power, tt.power)
			}
			if svc := s.get(path)["service"].(map[string]any); svc["powerState"] != tt.powerState {
				t.Errorf("service power state %v, want %s", svc["powerState"], tt.powerState)
			}
		})
	}

	t.Run("status and traffic", func(t *testing.T) {
		if st, _ := s.get(path + "/status")["status"].(map[string]any); st["powerState"] == "" || st["powerState"] == nil {
			t.Errorf("status %v: want a power state", st)
		}
		if tr := s.get(path + "/traffic?timeframe=day")["traffic"]; tr == nil {
			t.Error("traffic answered nothing")
		}
	})

	for _, category := range []string{"network", "cpu", "memory", "diskio", "ipmi"} {
		for _, mode := range []string{"graph", "text"} {
			t.Run("stats "+category+" "+mode, func(t *testing.T) {
				status, resp := s.do("POST", path+"/bare-metal/stats", `{"category":"`+category+`","mode":"`+mode+`","payload":{"predefined":"24h"}}`)
				if status != http.StatusOK {
					t.Fatalf("stats: %d %v", status, resp)
				}
				st := resp["stats"].(map[string]any)
				points, _ := st["points"].([]any)
				if category == "network" {
					ports, _ := st["ports"].([]any)
					if len(ports) == 0 {
						t.Fatalf("network stats %v: want the server's ports", st)
					}
					points, _ = ports[0].(map[string]any)["points"].([]any)
				}
				if st["category"] != category || len(points) == 0 {
					t.Errorf("stats %v: want %s points", st, category)
				}
			})
		}
	}

	t.Run("notes get and patch", func(t *testing.T) {
		if notes := s.get(path + "/bare-metal/notes")["notes"]; notes != "" {
			t.Errorf("notes of a new service %q, want none", notes)
		}
		status, resp := s.do("PATCH", path+"/bare-metal/notes", `{"notes":"rack 4, unit 12"}`)
		if status != http.StatusOK || resp["notes"] != "rack 4, unit 12" {
			t.Fatalf("patch notes: %d %v", status, resp)
		}
		if notes := s.get(path + "/bare-metal/notes")["notes"]; notes != "rack 4, unit 12" {
			t.Errorf("notes read back %q", notes)
		}
	})

	t.Run("cancel immediately gives the server back to the pool", func(t *testing.T) {
		status, resp := s.do("POST", path+"/cancel", `{"when":"immediately","cancellationReason":"moving on"}`)
		if status != http.StatusAccepted && status != http.StatusOK {
			t.Fatalf("cancel: %d %v", status, resp)
		}
		job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second)
		if job["status"] != "succeeded" || job["kind"] != "service.terminate" {
			t.Fatalf("termination %v ended %s: %v", job["kind"], job["status"], job["error"])
		}
		m := s.tosServer(server)
		if !slices.Contains(m.Tags, "For Rent") || hasMark(m) {
			t.Errorf("server tags after the termination %q: want \"For Rent\" and no mark", m.Tags)
		}
		if hasIP(m, extraIP) || len(m.IPs) != 1 {
			t.Errorf("server addresses after the termination %+v: want only its own", m.IPs)
		}
		if svc := s.get(path)["service"].(map[string]any); svc["status"] != "terminated" {
			t.Errorf("service is %v, want terminated", svc["status"])
		}
	})
}

func TestBareMetalFailedInstallNeedsRepairAndAReinstallRepairs(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path, server := s.bareMetal(bmOrder("provision pw 2", nil))
	const msg = "PXE boot timed out: no DHCP offer"
	s.tenantos.Inject(simkit.Fault{Op: "provisioning.startReinstallation", Target: strconv.Itoa(server), Times: 1, TaskError: msg})
	id := s.startJob("POST", path+"/bare-metal/reinstall", `{"profileId":3,"rootPassword":"reinstall pw 2"}`)
	job := s.waitJob(id, 30*time.Second)
	if job["status"] != "failed" || !strings.Contains(fmt.Sprint(job["error"]), msg) {
		t.Fatalf("reinstall ended %s: %v; want failed in Tenantos' words %q", job["status"], job["error"], msg)
	}
	if svc := s.get(path)["service"].(map[string]any); svc["status"] != "needs_repair" || svc["repairReason"] == nil {
		t.Fatalf("service after the failed install: %v (%v), want needs_repair with a reason", svc["status"], svc["repairReason"])
	}
	s.runJob("POST", path+"/bare-metal/reinstall", `{"profileId":3,"rootPassword":"reinstall pw 3"}`)
	if svc := s.get(path)["service"].(map[string]any); svc["status"] != "active" {
		t.Errorf("service after the repairing reinstall: %v (%v), want active", svc["status"], svc["repairReason"])
	}
	if m := s.tosServer(server); m.OS != "Rocky Linux 9" {
		t.Errorf("server runs %q after the repair, want Rocky Linux 9", m.OS)
	}
}

// TestBareMetalKilledWorkerDuringTheInstallFollowsTheSameInstallation kills
// a worker process with SIGKILL while Tenantos installs the server; the
// worker that takes the job over must follow that installation, not start
// another. The cases run in parallel, so asynq's minute is spent once.
func TestBareMetalKilledWorkerDuringTheInstallFollowsTheSameInstallation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, kind string
		// lostAnswer drops startReinstallation's answer: the worker dies
		// before its step knows that the install started.
		lostAnswer bool
	}{
		// A plain reinstall resumes at the same step as the provision; the
		// row is left out to keep the minute to one wave of two workers.
		{name: "provision", kind: "provision"},
		{name: "reinstall whose start was not answered", kind: "reinstall", lostAnswer: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kind := tt.kind
			s := newSystem(t, systemOpts{noWorker: true, installDuration: 4 * time.Second})
			kill := s.startChildWorker()
			var id, path string
			server := 3
			if kind == "provision" {
				var svc string
				svc, id = s.provision(bmOrder("provision pw 4", map[string]any{"serverId": server}))
				path = "/api/services/" + svc
			} else {
				path, server = s.bareMetal(bmOrder("provision pw 4", map[string]any{"serverId": server}))
				if tt.lostAnswer {
					s.tenantos.Inject(simkit.Fault{Op: "provisioning.startReinstallation", Times: 1, Drop: true})
				}
				id = s.startJob("POST", path+"/bare-metal/reinstall", `{"profileId":2,"rootPassword":"reinstall pw 4"}`)
			}
			want := map[string]int{"provision": 1, "reinstall": 2}[kind]
			jobtest.Eventually(t, 30*time.Second, "the install to start", func() bool { return s.tenantos.CountInstalls(server) == want })
			killed := kill()
			// A lost answer fails the attempt, which waits for its retry.
			if job := s.job(id); job["status"] != "running" && !(tt.lostAnswer && job["status"] == "retrying") {
				t.Fatalf("after the crash the job is %v, want running", job["status"])
			}
			s.takeOver(killed)
			job := s.waitJob(id, 60*time.Second)
			// A lost answer may be retried by the first worker before it dies.
			if attempts, _ := job["attempts"].(float64); job["status"] != "succeeded" || attempts < 2 || !tt.lostAnswer && attempts != 2 {
				t.Fatalf("job %s after %v attempts, want succeeded after the takeover: %v", job["status"], job["attempts"], job["error"])
			}
			if n := s.tenantos.CountInstalls(server); n != want {
				t.Errorf("%d installs started on server %d, want %d: the %s's install started again", n, server, want, kind)
			}
			if svc := s.get(path)["service"].(map[string]any); svc["status"] != "active" {
				t.Errorf("service is %v, want active", svc["status"])
			}
		})
	}
}

func TestBareMetalCancelledInstallSaysWhereItLeftTheServer(t *testing.T) {
	t.Parallel()
	t.Run("reinstall: stopped at Tenantos, service needs repair", func(t *testing.T) {
		t.Parallel()
		s := newSystem(t, systemOpts{installDuration: 5 * time.Second})
		path, server := s.bareMetal(bmOrder("provision pw 5", nil))
		id := s.startJob("POST", path+"/bare-metal/reinstall", `{"profileId":2,"rootPassword":"reinstall pw 5"}`)
		jobtest.Eventually(t, 10*time.Second, "the reinstall's install to run", func() bool {
			return s.tenantos.CountInstalls(server) == 2 && s.job(id)["step"] == "wait"
		})
		if status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", ""); status != http.StatusAccepted && status != http.StatusOK {
			t.Fatalf("cancel: %d %v", status, resp)
		}
		job := s.waitJob(id, 30*time.Second)
		errMsg := fmt.Sprint(job["error"])
		if job["status"] != "cancelled" || !strings.Contains(errMsg, "stopped at step") || !strings.Contains(errMsg, "server "+strconv.Itoa(server)) {
			t.Fatalf("reinstall ended %s: %q; want cancelled saying at which step it left server %d", job["status"], errMsg, server)
		}
		if st := s.tosInstall(server); st["cancelled"] != 1.0 || st["running"] != 0.0 {
			t.Errorf("Tenantos install status %v: want it stopped", st)
		}
		svc := s.get(path)["service"].(map[string]any)
		if reason := fmt.Sprint(svc["repairReason"]); svc["status"] != "needs_repair" || !strings.Contains(reason, "stopped at step") {
			t.Errorf("service is %v (%q), want needs_repair saying where the install stopped", svc["status"], reason)
		}
	})
	t.Run("provision: server back in the pool", func(t *testing.T) {
		t.Parallel()
		s := newSystem(t, systemOpts{installDuration: 5 * time.Second})
		_, id := s.provision(bmOrder("provision pw 6", map[string]any{"serverId": 1}))
		jobtest.Eventually(t, 10*time.Second, "the provision's install to run", func() bool {
			return s.tenantos.CountInstalls(1) == 1 && s.job(id)["step"] == "wait"
		})
		if status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", ""); status != http.StatusAccepted && status != http.StatusOK {
			t.Fatalf("cancel: %d %v", status, resp)
		}
		job := s.waitJob(id, 30*time.Second)
		if job["status"] != "cancelled" || !strings.Contains(fmt.Sprint(job["error"]), "given back to the pool") {
			t.Fatalf("provision ended %s: %v; want cancelled with the server given back", job["status"], job["error"])
		}
		m := s.tosServer(1)
		if !slices.Contains(m.Tags, "For Rent") || hasMark(m) {
			t.Errorf("server tags %q: want \"For Rent\" back and no mark", m.Tags)
		}
		if st := s.tosInstall(1); st["running"] != 0.0 {
			t.Errorf("Tenantos install status %v: want the install stopped", st)
		}
	})
}

// TestBareMetalProvisionCancelledWhileItWaitsGivesTheServerBack cancels a
// provision waiting to retry its install (Tenantos asked for a minute's
// patience) after it took and marked a server: a worker meets the
// cancellation and gives the server back, rather than the job ending with
// the server still taken.
func TestBareMetalProvisionCancelledWhileItWaitsGivesTheServerBack(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	s.tenantos.Inject(simkit.Fault{Op: "provisioning.startReinstallation", Status: 503, RetryAfter: time.Minute})
	_, id := s.provision(bmOrder("provision pw 7", map[string]any{"serverId": 3}))
	jobtest.Eventually(t, 10*time.Second, "the provision to wait for its retry", func() bool {
		return s.job(id)["status"] == "retrying" && hasMark(s.tosServer(3))
	})
	if status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", ""); status != http.StatusAccepted {
		t.Fatalf("cancel: %d %v; want 202, a worker stopping it", status, resp)
	}
	job := s.waitJob(id, 30*time.Second)
	if job["status"] != "cancelled" || !strings.Contains(fmt.Sprint(job["error"]), "given back to the pool") {
		t.Fatalf("provision ended %s: %v; want cancelled with the server given back", job["status"], job["error"])
	}
	if m := s.tosServer(3); !slices.Contains(m.Tags, "For Rent") || hasMark(m) {
		t.Errorf("server tags %q: want \"For Rent\" back and no mark", m.Tags)
	}
}

func TestBareMetalConsoleURLOnlyOpensFromTheBoundIPDuringTheSession(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{consoleTTL: time.Second, env: map[string]string{"TRUSTED_PROXIES": "127.0.0.1/32"}})
	path, _ := s.bareMetal(bmOrder("provision pw 7", nil))
	const client, other = "203.0.113.7", "198.51.100.9"
	status, resp := s.doHeader("POST", path+"/bare-metal/console", `{"consoleMode":"standard"}`, map[string]string{"X-Forwarded-For": client})
	if status != http.StatusOK {
		t.Fatalf("console: %d %v", status, resp)
	}
	console := resp["console"].(map[string]any)
	url, _ := console["url"].(string)
	if url == "" || console["authorizedIp"] != client {
		t.Fatalf("console %v: want a URL bound to %s", console, client)
	}
	open := func(from string) int {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-Forwarded-For", from)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := open(client); got != http.StatusOK {
		t.Errorf("console opened from the bound IP: %d, want 200", got)
	}
	if got := open(other); got != http.StatusForbidden {
		t.Errorf("console opened from another IP: %d, want 403", got)
	}
	// An expired session is gone at Tenantos: 404, from the bound IP too.
	jobtest.Eventually(t, 10*time.Second, "the console session to expire", func() bool { return open(client) == http.StatusNotFound })
}

// tableRows dumps every row of every table of the test's database as text.
func (s *system) tableRows() map[string][]string {
	s.t.Helper()
	ctx := context.Background()
	rows, err := s.db.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
	if err != nil {
		s.t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := s.db.Query(ctx, "SELECT row_to_json(x)::text FROM "+pgx.Identifier{table}.Sanitize()+" x")
		if err != nil {
			s.t.Fatal(err)
		}
		if out[table], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			s.t.Fatal(err)
		}
	}
	return out
}

// redisValues returns every key of the test's Redis database with its
// value, hash fields, list, set or sorted-set members as text.
func (s *system) redisValues() map[string]string {
	s.t.Helper()
	db, _ := strconv.Atoi(s.env["REDIS_DB"])
	c := jobtest.RedisClient(s.t, asynq.RedisClientOpt{Addr: s.env["REDIS_ADDR"], DB: db})
	ctx := context.Background()
	out := map[string]string{}
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		var val any
		var err error
		switch typ, _ := c.Type(ctx, key).Result(); typ {
		case "string":
			val, err = c.Get(ctx, key).Result()
		case "hash":
			val, err = c.HGetAll(ctx, key).Result()
		case "list":
			val, err = c.LRange(ctx, key, 0, -1).Result()
		case "set":
			val, err = c.SMembers(ctx, key).Result()
		case "zset":
			val, err = c.ZRange(ctx, key, 0, -1).Result()
		case "stream":
			val, err = c.XRange(ctx, key, "-", "+").Result()
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			s.t.Fatalf("redis %s: %v", key, err)
		}
		out[key] = fmt.Sprint(val)
	}
	if err := iter.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

func TestBareMetalPasswordsAppearNowhereInPlaintext(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	// Unique, so that a hit can only be a leak.
	provisionPW := "prov-" + uuid.NewString()[:18]
	reinstallPW := "rein-" + uuid.NewString()[:18]
	path, _ := s.bareMetal(bmOrder(provisionPW, nil))
	s.runJob("POST", path+"/bare-metal/reinstall", `{"profileId":2,"rootPassword":"`+reinstallPW+`"}`)
	job := s.runJob("POST", path+"/bare-metal/rescue", `{"profileId":10}`)
	rescuePW, _ := job["secrets"].(map[string]any)["password"].(string)
	if len(rescuePW) < 8 {
		t.Fatalf("rescue secrets %v: want the generated password", job["secrets"])
	}
	s.runJob("DELETE", path+"/bare-metal/rescue", "")
	passwords := map[string]string{"provision": provisionPW, "reinstall": reinstallPW, "rescue": rescuePW}

	t.Run("database", func(t *testing.T) {
		tables := s.tableRows()
		if len(tables["jobs"]) < 4 || len(tables["services"]) == 0 {
			t.Fatalf("dumped %d jobs and %d services: want the bare-metal ones", len(tables["jobs"]), len(tables["services"]))
		}
		for table, rows := range tables {
			for _, row := range rows {
				for what, pw := range passwords {
					if strings.Contains(row, pw) {
						t.Errorf("the %s password is in plaintext in table %s: %s", what, table, row)
					}
				}
			}
		}
	})
	t.Run("redis", func(t *testing.T) {
		values := s.redisValues()
		if len(values) == 0 {
			t.Fatal("no Redis keys: the scan missed the test's database")
		}
		for key, val := range values {
			for what, pw := range passwords {
				if strings.Contains(key, pw) || strings.Contains(val, pw) {
					t.Errorf("the %s password is in plaintext in Redis key %s", what, key)
				}
			}
		}
	})
	t.Run("logs", func(t *testing.T) {
		logs := s.logs.String()
		if !strings.Contains(logs, "step started") {
			t.Fatal("no job logs captured")
		}
		for what, pw := range passwords {
			if strings.Contains(logs, pw) {
				t.Errorf("the %s password is in plaintext in the logs", what)
			}
		}
	})
}

func TestBareMetalBadInputIsRefusedInTheEnvelope(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path, _ := s.bareMetal(bmOrder("provision pw 8", nil))
	ctx := context.Background()
	other, err := s.q.CreateTeam(ctx, "other-team")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.q.EnsurePerson(ctx, "someone@other.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.q.AddTeamMember(ctx, queries.AddTeamMemberParams{TeamID: other.ID, PersonID: p.ID, Role: "owner"}); err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := apikey.Create(ctx, s.q, apikey.Spec{TeamID: other.ID, PersonID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body string
		key                      string
		status                   int
		validation               bool // validationErrors must say why
	}{
		{name: "unknown profile on reinstall", method: "POST", path: "/bare-metal/reinstall", body: `{"profileId":99,"rootPassword":"reinstall pw 8"}`,
			status: http.StatusBadRequest, validation: true},
		{name: "power action explode", method: "POST", path: "/bare-metal/power", body: `{"action":"explode"}`, status: http.StatusBadRequest},
		{name: "stats category gpu", method: "POST", path: "/bare-metal/stats", body: `{"category":"gpu","mode":"graph"}`, status: http.StatusBadRequest},
		{name: "notes too long", method: "PATCH", path: "/bare-metal/notes", body: `{"notes":"` + strings.Repeat("n", 10001) + `"}`, status: http.StatusBadRequest},
		{name: "another team's service", method: "GET", path: "/bare-metal", key: otherKey, status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := cmp.Or(tt.key, s.key)
			status, resp := s.doWith(key, tt.method, path+tt.path, tt.body)
			errs, _ := resp["validationErrors"].([]any)
			if status != tt.status || resp["success"] != false || resp["error"] == "" || resp["error"] == nil || tt.validation && len(errs) == 0 {
				t.Errorf("%s %s: %d %v; want %d in the error envelope", tt.method, tt.path, status, resp, tt.status)
			}
		})
	}
	if n := s.tenantos.CountInstalls(1) + s.tenantos.CountInstalls(3); n != 1 {
		t.Errorf("%d installs started, want only the provision's", n)
	}
}
