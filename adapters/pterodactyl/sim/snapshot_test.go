package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const carolKey = "ptlc_carol000000000000000000000000000000000000"

// snapshotSim serves a simulator as newSim does, with a key for user 4
// (the first user a test creates), and returns the Config it was made
// with so that a fresh one can be made alike.
func snapshotSim(t *testing.T, opts ...func(*sim.Config)) (*sim.Server, string, sim.Config) {
	t.Helper()
	var cfg sim.Config
	opts = append(opts, func(c *sim.Config) {
		keys := map[string]int{carolKey: 4}
		for k, v := range c.ClientKeys {
			keys[k] = v
		}
		c.ClientKeys = keys
		cfg = *c
	})
	s, url := newSim(t, opts...)
	return s, url, cfg
}

// loaded serves a fresh simulator made with cfg and loaded with snap.
func loaded(t *testing.T, cfg sim.Config, snap []byte) (*sim.Server, string) {
	t.Helper()
	s := sim.New(cfg)
	if err := s.Load(bytes.NewReader(snap)); err != nil {
		s.Close()
		t.Fatalf("Load: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts.URL
}

// save snapshots s.
func save(t *testing.T, s *sim.Server) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return buf.Bytes()
}

// post sends a request that must answer want.
func post(t *testing.T, url, key string, body any, want int) response {
	t.Helper()
	r := do(t, "POST", url, key, body)
	if r.status != want {
		t.Fatalf("POST %s: %d, want %d: %s", url, r.status, want, r.body)
	}
	return r
}

// observation is an answer with the simulator's own address taken out.
type observation struct {
	Status int
	Body   any
}

// observe reads everything a client sees of the simulator at url, by
// the name of the call: the application API's servers, users, nodes,
// allocations, locations and eggs, and the client API's view, startup,
// allocations, backups and power state of every server. Uptime and stats
// are left out: they restart at Load.
func observe(t *testing.T, url string) map[string]observation {
	t.Helper()
	out := map[string]observation{}
	read := func(name, path, key string) any {
		r := do(t, "GET", url+path, key, nil)
		var body any
		if err := json.Unmarshal(bytes.ReplaceAll(r.body, []byte(url), []byte("BASE")), &body); err != nil {
			t.Fatalf("GET %s: %d %q", path, r.status, r.body)
		}
		out[name] = observation{r.status, body}
		return body
	}
	servers := read("servers", "/api/application/servers?include=allocations,variables&per_page=100", appKey)
	for _, p := range []string{"/api/application/users", "/api/application/nodes", "/api/application/locations",
		"/api/application/nodes/1/allocations?per_page=100", "/api/application/nodes/2/allocations?per_page=100",
		"/api/application/nests/1/eggs/1?include=variables", "/api/application/nests/2/eggs/2?include=variables"} {
		read(p, p, appKey)
	}
	items, _ := path(servers, "data").([]any)
	if len(items) == 0 {
		t.Fatalf("no servers at %s", url)
	}
	for _, it := range items {
		attrs := path(it, "attributes").(map[string]any)
		id := fmt.Sprint(attrs["id"])
		read("server "+id, "/api/application/servers/"+id+"?include=allocations,variables", appKey)
		if ext, ok := attrs["external_id"].(string); ok {
			read("external "+ext, "/api/application/servers/external/"+ext, appKey)
		}
		base := "/api/client/servers/" + attrs["identifier"].(string)
		read("view "+id, base, adminKey)
		read("view by uuid "+id, "/api/client/servers/"+attrs["uuid"].(string), adminKey)
		for _, sub := range []string{"/startup", "/backups", "/network/allocations"} {
			read(sub+" "+id, base+sub, adminKey)
		}
		res := read("resources "+id, base+"/resources", adminKey)
		// Only the state: uptime and stats restart at Load.
		out["resources "+id] = observation{out["resources "+id].Status, map[string]any{
			"current_state": path(res, "attributes", "current_state"),
			"is_suspended":  path(res, "attributes", "is_suspended")}}
	}
	return out
}

// appServer reads a server on the application API.
func appServer(t *testing.T, url string, id int) map[string]any {
	t.Helper()
	return get(t, fmt.Sprintf("%s/api/application/servers/%d", url, id), appKey)["attributes"].(map[string]any)
}

// stateOf reads a server's power state from the client API's resources.
func stateOf(t *testing.T, url, identifier string) string {
	t.Helper()
	s, _ := path(get(t, url+"/api/client/servers/"+identifier+"/resources", adminKey), "attributes", "current_state").(string)
	return s
}

func TestSnapshotRoundTripKeepsEverythingTheAPIsShow(t *testing.T) {
	s1, url1, cfg := snapshotSim(t)

	// A new user and a server of hers, installed, running, with a backup.
	r := post(t, url1+"/api/application/users", appKey, map[string]any{"email": "carol@example.test",
		"username": "carol", "first_name": "Carol", "last_name": "C", "external_id": "cust-7"}, http.StatusCreated)
	if id := path(r.json(t), "attributes", "id"); id != 4.0 {
		t.Fatalf("carol is user %v, want 4 (the key's)", id)
	}
	body := newServerBody()
	body["user"] = 4
	r = post(t, url1+"/api/application/servers", appKey, body, http.StatusCreated)
	created := path(r.json(t), "attributes").(map[string]any)
	id, identifier := int(created["id"].(float64)), created["identifier"].(string)
	adaptertest.Eventually(t, "the install", func() bool { return appServer(t, url1, id)["status"] == nil })
	carol := url1 + "/api/client/servers/" + identifier
	if r := do(t, "PUT", carol+"/startup/variable", carolKey, map[string]any{"key": "MINECRAFT_VERSION", "value": "1.20.4"}); r.status != http.StatusOK {
		t.Fatalf("set variable: %d %s", r.status, r.body)
	}
	post(t, carol+"/power", carolKey, map[string]any{"signal": "start"}, http.StatusNoContent)
	adaptertest.Eventually(t, "the start", func() bool { return stateOf(t, url1, identifier) == "running" })
	r = post(t, carol+"/backups", carolKey, map[string]any{"name": "nightly", "ignored": "logs", "is_locked": true}, http.StatusOK)
	backup := path(r.json(t), "attributes", "uuid").(string)
	adaptertest.Eventually(t, "the backup", func() bool {
		return path(get(t, carol+"/backups/"+backup, carolKey), "attributes", "completed_at") != nil
	})
	// A second server suspended.
	post(t, url1+"/api/application/servers/2/suspend", appKey, nil, http.StatusNoContent)

	before := observe(t, url1)
	// Load in a later second than s1 booted in, so that timestamps taken
	// from the fresh simulator's boot instead of the snapshot would show.
	booted, err := time.Parse(time.RFC3339, path(before["/api/application/users"].Body, "data", 0, "attributes", "created_at").(string))
	if err != nil {
		t.Fatal(err)
	}
	adaptertest.Eventually(t, "the next second", func() bool { return time.Now().Truncate(time.Second).After(booted) })
	snap := save(t, s1)
	var head map[string]any
	if err := json.Unmarshal(snap, &head); err != nil || head["version"] != 1.0 {
		t.Fatalf("snapshot version %v (%v)", head["version"], err)
	}
	s1.Close()

	_, url2 := loaded(t, cfg, snap)
	after := observe(t, url2)
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if !reflect.DeepEqual(before[name], after[name]) {
			b, _ := json.Marshal(before[name])
			a, _ := json.Marshal(after[name])
			t.Errorf("%s changed across Save and Load:\nbefore %s\nafter  %s", name, b, a)
		}
	}
	if len(after) != len(before) {
		t.Errorf("observed %d calls after Load, %d before", len(after), len(before))
	}

	// Spelled out: the ids, the running, the suspended and the backup.
	got := get(t, url2+"/api/application/servers/external/order-42", appKey)["attributes"].(map[string]any)
	if got["id"] != created["id"] || got["uuid"] != created["uuid"] || got["identifier"] != identifier || got["user"] != 4.0 {
		t.Errorf("server after Load = %v, created as %v", got, created)
	}
	if st := stateOf(t, url2, identifier); st != "running" {
		t.Errorf("running server came back %s", st)
	}
	demo1 := get(t, url2+"/api/application/servers/1", appKey)["attributes"].(map[string]any)
	if st := stateOf(t, url2, demo1["identifier"].(string)); st != "running" {
		t.Errorf("demo server 1 came back %s", st)
	}
	if got := appServer(t, url2, 2); got["suspended"] != true || got["status"] != "suspended" {
		t.Errorf("suspended server came back %v", got)
	}
	demo2 := "/api/client/servers/" + appServer(t, url2, 2)["identifier"].(string)
	wantError(t, do(t, "POST", url2+demo2+"/power", aliceKey, map[string]any{"signal": "start"}), 409,
		"ServerStateConflictException", "This server is currently suspended and the functionality requested is unavailable.")
	carol = url2 + "/api/client/servers/" + identifier
	b := get(t, carol+"/backups/"+backup, carolKey)["attributes"].(map[string]any)
	if b["is_successful"] != true || b["is_locked"] != true || b["name"] != "nightly" || path(b, "ignored_files", 0) != "logs" {
		t.Errorf("backup after Load = %v", b)
	}

	// The backup restores.
	post(t, carol+"/backups/"+backup+"/restore", carolKey, map[string]any{"truncate": false}, http.StatusNoContent)
	adaptertest.Eventually(t, "the restore", func() bool {
		return path(get(t, carol, carolKey), "attributes", "status") == nil && stateOf(t, url2, identifier) == "offline"
	})
}

func TestRecordsCreatedAfterLoadGetFreshIDs(t *testing.T) {
	s1, url1, cfg := snapshotSim(t)
	r := post(t, url1+"/api/application/servers", appKey, newServerBody(), http.StatusCreated)
	first := path(r.json(t), "attributes").(map[string]any)
	base := url1 + "/api/client/servers/" + first["identifier"].(string)
	adaptertest.Eventually(t, "the install", func() bool { return appServer(t, url1, 4)["status"] == nil })
	old := completedBackup(t, base)
	_, url2 := loaded(t, cfg, save(t, s1))

	// The allocation and the external id the saved server holds stay
	// taken.
	body := newServerBody()
	wantAllocationTaken := do(t, "POST", url2+"/api/application/servers", appKey, body)
	if wantAllocationTaken.status != 422 {
		t.Errorf("create on a held allocation and external id: %d %s", wantAllocationTaken.status, wantAllocationTaken.body)
	}
	body["external_id"], body["name"] = "order-43", "Second"
	body["allocation"] = map[string]any{"default": 4}
	r = post(t, url2+"/api/application/servers", appKey, body, http.StatusCreated)
	second := path(r.json(t), "attributes").(map[string]any)
	if second["id"] != 5.0 || second["uuid"] == first["uuid"] || second["identifier"] == first["identifier"] ||
		second["allocation"] != 4.0 {
		t.Errorf("server created after Load = %v; the saved one %v", second, first)
	}
	// Deployment picks an allocation no saved server holds.
	delete(body, "allocation")
	body["external_id"] = "order-44"
	body["deploy"] = map[string]any{"locations": []int{1}, "dedicated_ip": false, "port_range": []string{}}
	r = post(t, url2+"/api/application/servers", appKey, body, http.StatusCreated)
	third := path(r.json(t), "attributes").(map[string]any)
	held := []any{1.0, 2.0, 21.0, 3.0, 4.0}
	if third["id"] != 6.0 || slices.Contains(held, third["allocation"]) {
		t.Errorf("deployed server after Load = id %v on allocation %v", third["id"], third["allocation"])
	}
	r = post(t, url2+"/api/application/users", appKey, map[string]any{"email": "dave@example.test", "username": "dave",
		"first_name": "Dave", "last_name": "D"}, http.StatusCreated)
	if id := path(r.json(t), "attributes", "id"); id != 4.0 {
		t.Errorf("user created after Load is %v, want 4", id)
	}
	base = url2 + "/api/client/servers/" + first["identifier"].(string)
	r = post(t, base+"/backups", aliceKey, nil, http.StatusOK)
	if id := path(r.json(t), "attributes", "uuid"); id == old || id == "" {
		t.Errorf("backup after Load has uuid %v, the saved one %s", id, old)
	}
	if n := path(get(t, base+"/backups", aliceKey), "meta", "pagination", "total"); n != 2.0 {
		t.Errorf("%v backups after Load and one more, want 2", n)
	}
}

func TestServerSavedMidInstallDoesNotComeBackInstalling(t *testing.T) {
	tests := []struct {
		name       string
		startAfter bool
		fault      bool
		closeFirst bool
		status     any // the application API's status after Load
		state      string
	}{
		{name: "installed", status: nil, state: "offline"},
		{name: "installed after Close", closeFirst: true, status: nil, state: "offline"},
		{name: "started on completion", startAfter: true, closeFirst: true, status: nil, state: "running"},
		{name: "failed by the fault it was created with", fault: true, status: "install_failed", state: "offline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s1, url1, cfg := snapshotSim(t, slow)
			if tt.fault {
				s1.Inject(simkit.Fault{Op: "servers.create", Times: 1, TaskError: "install script exited with code 1"})
			}
			body := newServerBody()
			body["start_on_completion"] = tt.startAfter
			r := post(t, url1+"/api/application/servers", appKey, body, http.StatusCreated)
			identifier := path(r.json(t), "attributes", "identifier").(string)
			if got := appServer(t, url1, 4)["status"]; got != "installing" {
				t.Fatalf("status before Save %v, want installing", got)
			}
			if tt.closeFirst {
				s1.Close()
			}
			s2, url2 := loaded(t, cfg, save(t, s1))
			check := func(when string) {
				got := appServer(t, url2, 4)
				if got["status"] != tt.status || path(got, "container", "installed") != map[bool]float64{true: 0, false: 1}[tt.fault] {
					t.Errorf("%s: status %v, installed %v; want %v", when, got["status"], path(got, "container", "installed"), tt.status)
				}
				view := get(t, url2+"/api/client/servers/"+identifier, adminKey)["attributes"].(map[string]any)
				if view["is_installing"] != tt.fault {
					t.Errorf("%s: is_installing %v", when, view["is_installing"])
				}
				if st := mustServer(t, s2, 4).State; st != tt.state {
					t.Errorf("%s: state %s, want %s", when, st, tt.state)
				}
			}
			check("right after Load")
			time.Sleep(cfg.InstallDuration + cfg.TaskDuration)
			check("after the install would have ended")
		})
	}
}

func TestServerSavedMidFailingReinstallComesBackReinstallFailed(t *testing.T) {
	s1, url1, cfg := snapshotSim(t, slow)
	s1.Inject(simkit.Fault{Op: "servers.reinstall", Times: 1, TaskError: "install script exited with code 1"})
	post(t, url1+"/api/application/servers/2/reinstall", appKey, nil, http.StatusNoContent)
	s2, _ := loaded(t, cfg, save(t, s1))
	if g := mustServer(t, s2, 2); g.Status != sim.StatusReinstallFailed {
		t.Errorf("server saved mid failing reinstall came back %q, want reinstall_failed", g.Status)
	}
}

func TestServerSavedMidTransitionComesBackWhereItWasHeading(t *testing.T) {
	tests := []struct {
		signal string
		server int
		during string
		want   string
	}{
		{signal: "start", server: 2, during: "starting", want: "running"},
		{signal: "stop", server: 1, during: "stopping", want: "offline"},
		{signal: "restart", server: 1, during: "stopping", want: "running"},
	}
	for _, tt := range tests {
		t.Run(tt.signal, func(t *testing.T) {
			t.Parallel()
			s1, url1, cfg := snapshotSim(t, slow)
			base := clientURL(t, s1, url1, tt.server)
			post(t, base+"/power", aliceKey, map[string]any{"signal": tt.signal}, http.StatusNoContent)
			if st := currentState(t, base); st != tt.during {
				t.Fatalf("state before Save %s, want %s", st, tt.during)
			}
			s2, url2 := loaded(t, cfg, save(t, s1))
			base = clientURL(t, s2, url2, tt.server)
			if st := currentState(t, base); st != tt.want {
				t.Errorf("state after Load %s, want %s", st, tt.want)
			}
			// It takes signals again: Wings' power lock was not saved.
			post(t, base+"/power", aliceKey, map[string]any{"signal": "kill"}, http.StatusNoContent)
			if st := currentState(t, base); st != "offline" {
				t.Errorf("after kill: %s", st)
			}
		})
	}
}

func TestBackupAndRestoreSavedMidTaskComeBackEnded(t *testing.T) {
	s1, url1, cfg := snapshotSim(t, slow)
	base1 := clientURL(t, s1, url1, 1)
	restored := completedBackup(t, base1)
	post(t, base1+"/backups/"+restored+"/restore", aliceKey, map[string]any{"truncate": false}, http.StatusNoContent)
	running := path(post(t, clientURL(t, s1, url1, 2)+"/backups", aliceKey, nil, http.StatusOK).json(t), "attributes", "uuid").(string)
	if g := mustServer(t, s1, 1); g.Status != sim.StatusRestoringBackup {
		t.Fatalf("server 1 is %q before Save, want restoring", g.Status)
	}
	s2, url2 := loaded(t, cfg, save(t, s1))

	base := clientURL(t, s2, url2, 1)
	if st := path(get(t, base, aliceKey), "attributes", "status"); st != nil || currentState(t, base) != "offline" {
		t.Errorf("restored server came back %v/%s, want normal and offline", st, currentState(t, base))
	}
	base = clientURL(t, s2, url2, 2)
	b := get(t, base+"/backups/"+running, aliceKey)["attributes"].(map[string]any)
	if b["completed_at"] == nil || b["is_successful"] != true || !strings.HasPrefix(fmt.Sprint(b["checksum"]), "sha1:") {
		t.Errorf("running backup came back %v", b)
	}
	post(t, base+"/backups/"+running+"/restore", aliceKey, map[string]any{"truncate": true}, http.StatusNoContent)
}

func TestLoadRefusesWhatSaveDidNotWrite(t *testing.T) {
	s, url := newSim(t)
	good := save(t, s)
	edited := func(edit func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	server := func(m map[string]any, i int) map[string]any { return m["servers"].([]any)[i].(map[string]any) }
	tests := []struct {
		name, data, want string
	}{
		{"garbage", "not json at all", "not a snapshot written by Save"},
		{"empty", "", "not a snapshot written by Save"},
		{"no version", `{"servers": []}`, `it has no "version"`},
		{"unknown version", `{"version": 2, "whatever": true}`, "snapshot version 2 is not supported; this simulator reads version 1"},
		{"unknown field", edited(func(m map[string]any) { m["bogus"] = 1 }), `unknown field "bogus"`},
		{"missing owner", edited(func(m map[string]any) { server(m, 0)["ownerId"] = 99 }), "server 1: owner 99 is not in the snapshot"},
		{"duplicate identifier", edited(func(m map[string]any) { server(m, 1)["identifier"] = server(m, 0)["identifier"] }), "identifier"},
		{"unknown state", edited(func(m map[string]any) { server(m, 0)["state"] = "exploding" }), `unknown power state "exploding"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Load(strings.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "sim: loading snapshot: ") {
				t.Fatalf("Load = %v, want an error saying %q", err, tt.want)
			}
			// Nothing changed.
			if got := get(t, url+"/api/application/servers/external/demo-mc-1", appKey); path(got, "attributes", "id") != 1.0 {
				t.Errorf("after a refused Load: %v", got)
			}
		})
	}
}

func TestLoadReplacesTheStateAndClosesWebsockets(t *testing.T) {
	s, url := newSim(t)
	v := connect(t, s, url, 1, aliceKey)
	// A snapshot of a world with only the first demo server.
	other := sim.New(sim.Config{NodeSecret: nodeSecret})
	defer other.Close()
	if _, err := other.AddServer(sim.DemoServers()[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Load(bytes.NewReader(save(t, other))); err != nil {
		t.Fatal(err)
	}
	if n := path(get(t, url+"/api/application/servers", appKey), "meta", "pagination", "total"); n != 1.0 {
		t.Errorf("%v servers after Load, want 1", n)
	}
	v.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := v.c.ReadMessage(); err != nil {
			if strings.Contains(err.Error(), "timeout") {
				t.Errorf("websocket still open after Load")
			}
			break
		}
	}
}

func TestLoadOnAClosedSimulatorFails(t *testing.T) {
	s, _ := newSim(t)
	snap := save(t, s)
	s.Close()
	if err := s.Load(bytes.NewReader(snap)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Load after Close = %v", err)
	}
}
