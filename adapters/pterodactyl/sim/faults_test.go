package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

func TestStatusFaultHitsTheNextCallsInThePanelShape(t *testing.T) {
	s, url := newSim(t)
	g := mustServer(t, s, 2)
	s.Inject(simkit.Fault{Op: "client.power", Target: g.Identifier, Times: 2, Status: 503, Message: "Wings is restarting"})
	base := clientURL(t, s, url, 2)
	for i := range 2 {
		wantError(t, do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}), 503, "HttpException", "Wings is restarting")
		if st := mustServer(t, s, 2).State; st != sim.StateOffline {
			t.Fatalf("call %d was carried out: %s", i+1, st)
		}
	}
	if r := do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}); r.status != 204 {
		t.Errorf("third call: %d %s", r.status, r.body)
	}
}

func TestStatusFaultWithoutMessageSaysWhatThePanelWould(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.get", Status: 500})
	wantError(t, do(t, "GET", url+"/api/application/servers/1", appKey, nil), 500, "HttpException",
		"An unexpected error was encountered while processing this request, please try again.")
}

func TestRetryAfterIsSentWithTheFault(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.list", Status: 429, RetryAfter: 2500 * time.Millisecond})
	r := do(t, "GET", url+"/api/application/servers", appKey, nil)
	wantError(t, r, 429, "TooManyRequestsHttpException", "Too Many Attempts.")
	if got := r.header.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After %q, want 3", got)
	}
}

func TestDropCarriesTheCallOutButLosesTheAnswer(t *testing.T) {
	tests := []struct {
		name, op, key, path string
		body                any
		done                func(*sim.Server) bool
	}{
		{"no-content answer", "client.power", aliceKey, "/api/client/servers/{id}/power", map[string]any{"signal": "start"},
			func(s *sim.Server) bool { g, _ := s.Server(2); return g.State != sim.StateOffline }},
		{"json answer", "servers.create", appKey, "/api/application/servers", newServerBody(),
			func(s *sim.Server) bool { return len(s.Servers()) == 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := newSim(t)
			s.Inject(simkit.Fault{Op: tt.op, Times: 1, Drop: true})
			b, _ := json.Marshal(tt.body)
			req, _ := http.NewRequest("POST", url+strings.ReplaceAll(tt.path, "{id}", mustServer(t, s, 2).Identifier), strings.NewReader(string(b)))
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Authorization", "Bearer "+tt.key)
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				_, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			if err == nil {
				t.Fatal("the dropped call was answered in full")
			}
			if !tt.done(s) {
				t.Error("the dropped call was not carried out")
			}
		})
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "client.resources", Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", clientURL(t, s, url, 1)+"/resources", nil)
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	_, err := http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
	adaptertest.Eventually(t, "the hung call in the log", func() bool { return s.CountCalls("client.resources", "") == 1 })
}

func TestTaskErrorFailsTheInstall(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.create", Times: 1, TaskError: "install script exited with code 1"})
	r := do(t, "POST", url+"/api/application/servers", appKey, newServerBody())
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := int(path(r.json(t), "attributes", "id").(float64))
	adaptertest.Eventually(t, "the failed install", func() bool { g, _ := s.Server(id); return g.Status == sim.StatusInstallFailed })
	got := get(t, url+"/api/application/servers/external/order-42", appKey)
	if path(got, "attributes", "status") != "install_failed" || path(got, "attributes", "container", "installed") != 0.0 {
		t.Errorf("failed install shows %v", got["attributes"])
	}
	wantError(t, do(t, "POST", clientURL(t, s, url, id)+"/power", aliceKey, map[string]any{"signal": "start"}), 409,
		"ServerStateConflictException", "This server has not yet completed its installation process, please try again later.")
}

// TestTaskErrorFailsTheReinstall: the panel (from v1.11) marks a failed
// reinstall reinstall_failed, which counts as installed: the client API
// serves the server.
func TestTaskErrorFailsTheReinstall(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.reinstall", Times: 1, TaskError: "install script exited with code 1"})
	if r := do(t, "POST", url+"/api/application/servers/2/reinstall", appKey, nil); r.status != http.StatusNoContent {
		t.Fatalf("reinstall: %d %s", r.status, r.body)
	}
	adaptertest.Eventually(t, "the failed reinstall", func() bool { return mustServer(t, s, 2).Status == sim.StatusReinstallFailed })
	got := get(t, url+"/api/application/servers/2", appKey)
	if path(got, "attributes", "status") != "reinstall_failed" || path(got, "attributes", "container", "installed") != 1.0 {
		t.Errorf("failed reinstall shows %v", got["attributes"])
	}
	if r := do(t, "POST", clientURL(t, s, url, 2)+"/power", aliceKey, map[string]any{"signal": "start"}); r.status != http.StatusNoContent {
		t.Errorf("power on a server whose reinstall failed: %d %s, want 204", r.status, r.body)
	}
}

func TestTaskErrorFailsTheBackup(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "backups.create", Times: 1, TaskError: "disk full"})
	base := clientURL(t, s, url, 1)
	r := do(t, "POST", base+"/backups", aliceKey, map[string]any{"is_locked": true})
	id := path(r.json(t), "attributes", "uuid").(string)
	adaptertest.Eventually(t, "the failed backup", func() bool {
		return path(get(t, base+"/backups/"+id, aliceKey), "attributes", "completed_at") != nil
	})
	b := get(t, base+"/backups/"+id, aliceKey)["attributes"]
	if path(b, "is_successful") != false || path(b, "is_locked") != false {
		t.Errorf("failed backup = %v", b)
	}
	if r := do(t, "DELETE", base+"/backups/"+id, aliceKey, nil); r.status != 204 {
		t.Errorf("deleting a failed backup: %d %s", r.status, r.body)
	}
}

func TestTaskErrorFailsTheStart(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "client.power", Times: 1, TaskError: "container exited with code 137"})
	base := clientURL(t, s, url, 2)
	do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"})
	adaptertest.Eventually(t, "the failed start", func() bool { return mustServer(t, s, 2).State == sim.StateOffline })
	if n := s.CountCalls("client.power", mustServer(t, s, 2).Identifier); n != 1 {
		t.Errorf("logged %d power calls", n)
	}
}

func TestRandomFaultsRepeatWithTheSameSeed(t *testing.T) {
	outcomes := func() string {
		s, url := newSim(t)
		s.SetRandomFaults(simkit.RandomFaults{Rate: 0.3})
		var b strings.Builder
		for range 40 {
			if r := do(t, "GET", url+"/api/application/locations", appKey, nil); r.status == 503 {
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

func TestWebsocketFaultsRefuseTheUpgradeInWingsShape(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "ws.connect", Times: 1, Status: 502, Message: "node unreachable"})
	_, socket := credentials(t, s, url, 1, aliceKey)
	_, res, err := websocket.DefaultDialer.Dial(socket, http.Header{"Origin": {panelURL}})
	if err == nil || res == nil || res.StatusCode != 502 {
		t.Fatalf("dial: %v %v", err, res)
	}
	b, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(b), `"error":"node unreachable"`) {
		t.Errorf("body %s", b)
	}
}

func TestCallLogRecordsOpsTargetsAndStatuses(t *testing.T) {
	s, url := newSim(t)
	g := mustServer(t, s, 1)
	s.ResetCalls()
	do(t, "GET", url+"/api/application/servers/1", appKey, nil)
	do(t, "GET", url+"/api/client/servers/"+g.UUID+"/resources", aliceKey, nil)
	do(t, "GET", url+"/api/client/servers/"+g.Identifier, bobKey, nil)
	var got []string
	for _, c := range s.Calls() {
		got = append(got, c.Op+" "+c.Target+" "+http.StatusText(c.Status))
	}
	want := []string{"servers.get 1 OK", "client.resources " + g.Identifier + " OK", "client.server  Not Found"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", got, want)
	}
	r := do(t, "GET", url+"/_sim/calls", "", nil)
	var calls []simkit.Call
	if err := json.Unmarshal(r.body, &calls); err != nil || len(calls) != 3 {
		t.Errorf("/_sim/calls: %v %s", err, r.body)
	}
}

func TestControlEndpointAddsAndListsServers(t *testing.T) {
	s, url := newSim(t)
	res, err := http.Post(url+"/_sim/servers", "application/json",
		strings.NewReader(`{"name":"Added","ownerId":3,"eggId":1,"allocationId":5,"state":"running"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /_sim/servers: %d", res.StatusCode)
	}
	var listed []sim.GameServer
	r := do(t, "GET", url+"/_sim/servers", "", nil)
	if err := json.Unmarshal(r.body, &listed); err != nil || len(listed) != 4 || listed[3].Name != "Added" || listed[3].State != "running" {
		t.Errorf("listed %+v %v", listed, err)
	}
	if got := get(t, url+"/api/client/servers/"+listed[3].Identifier, bobKey); path(got, "attributes", "name") != "Added" {
		t.Errorf("added server over the client API: %v", got)
	}
	if len(s.Servers()) != 4 {
		t.Error("Servers() misses the added server")
	}
}
