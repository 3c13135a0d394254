package sim_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

// clientURL is the client API base of a demo server.
func clientURL(t *testing.T, s *sim.Server, url string, id int) string {
	t.Helper()
	g, ok := s.Server(id)
	if !ok {
		t.Fatalf("no server %d", id)
	}
	return url + "/api/client/servers/" + g.Identifier
}

// currentState reads the power state from the resources endpoint.
func currentState(t *testing.T, base string) string {
	t.Helper()
	s, _ := path(get(t, base+"/resources", aliceKey), "attributes", "current_state").(string)
	return s
}

func TestPowerSignalsMoveThroughStates(t *testing.T) {
	tests := []struct {
		signal        string
		server        int
		during, after string
	}{
		{signal: "start", server: 2, during: "starting", after: "running"},
		{signal: "stop", server: 1, during: "stopping", after: "offline"},
		{signal: "restart", server: 1, during: "stopping", after: "running"},
		{signal: "kill", server: 1, during: "offline", after: "offline"},
	}
	for _, tt := range tests {
		t.Run(tt.signal, func(t *testing.T) {
			s, url := newSim(t, slow)
			base := clientURL(t, s, url, tt.server)
			if r := do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": tt.signal}); r.status != http.StatusNoContent {
				t.Fatalf("power: %d %s", r.status, r.body)
			}
			if got := currentState(t, base); got != tt.during {
				t.Errorf("right after %s: %s, want %s", tt.signal, got, tt.during)
			}
			adaptertest.Eventually(t, tt.after, func() bool { return currentState(t, base) == tt.after })
			if tt.after == "running" {
				res := get(t, base+"/resources", aliceKey)
				if path(res, "attributes", "resources", "memory_bytes").(float64) <= 0 {
					t.Errorf("running server uses no memory: %v", res)
				}
			}
		})
	}
}

func TestPowerSignalMustBeKnown(t *testing.T) {
	s, url := newSim(t)
	r := do(t, "POST", clientURL(t, s, url, 1)+"/power", aliceKey, map[string]any{"signal": "explode"})
	if errs := errorsOf(t, r); r.status != 422 || errs[0] != (apiErr{"ValidationException", "422",
		"The selected signal is invalid.", "signal", "in"}) {
		t.Errorf("got %d %+v", r.status, errs)
	}
}

func TestCommandNeedsARunningServer(t *testing.T) {
	s, url := newSim(t)
	wantError(t, do(t, "POST", clientURL(t, s, url, 2)+"/command", aliceKey, map[string]any{"command": "say hi"}),
		502, "HttpException", "Server must be online in order to send commands.")
	if r := do(t, "POST", clientURL(t, s, url, 1)+"/command", aliceKey, map[string]any{"command": "say hi"}); r.status != 204 {
		t.Errorf("command on a running server: %d %s", r.status, r.body)
	}
}

func TestStartupVariableFollowsTheEggRules(t *testing.T) {
	tests := []struct {
		name, key, value string
		status           int
		detail           string
	}{
		{"editable and valid", "SERVER_JARFILE", "spigot.jar", 200, ""},
		{"against its regex", "SERVER_JARFILE", "spigot.zip", 422, "The value format is invalid."},
		{"read-only", "BUILD_NUMBER", "12", 400, "The environment variable you are trying to edit is read-only."},
		{"unknown", "NOPE", "x", 400, "The environment variable you are trying to edit does not exist."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := newSim(t)
			r := do(t, "PUT", clientURL(t, s, url, 1)+"/startup/variable", aliceKey, map[string]any{"key": tt.key, "value": tt.value})
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status != 200 {
				if errs := errorsOf(t, r); errs[0].Detail != tt.detail {
					t.Errorf("detail %q, want %q", errs[0].Detail, tt.detail)
				}
				return
			}
			got := r.json(t)
			if path(got, "attributes", "server_value") != tt.value || !strings.Contains(path(got, "meta", "startup_command").(string), tt.value) {
				t.Errorf("answer %v", got)
			}
			if g, _ := s.Server(1); g.Environment[tt.key] != tt.value {
				t.Errorf("stored %q", g.Environment[tt.key])
			}
		})
	}
}

func TestHiddenVariablesAreNotShown(t *testing.T) {
	s, url := newSim(t)
	do(t, "POST", url+"/api/application/servers/3/unsuspend", appKey, nil)
	startup := get(t, clientURL(t, s, url, 3)+"/startup", bobKey)
	if len(startup["data"].([]any)) != 3 {
		t.Errorf("listed %d variables, want the 3 viewable ones", len(startup["data"].([]any)))
	}
	for _, v := range startup["data"].([]any) {
		if path(v, "attributes", "env_variable") == "PUBLIC" {
			t.Error("PUBLIC is not user_viewable but is listed")
		}
	}
}

// mustServer returns a demo server.
func mustServer(t *testing.T, s *sim.Server, id int) sim.GameServer {
	t.Helper()
	g, ok := s.Server(id)
	if !ok {
		t.Fatalf("no server %d", id)
	}
	return g
}

func TestClientViewHasAllocationsAndVariables(t *testing.T) {
	s, url := newSim(t)
	got := get(t, clientURL(t, s, url, 1), aliceKey)
	attrs := got["attributes"]
	if path(attrs, "relationships", "allocations", "data", 0, "attributes", "is_default") != true ||
		len(path(attrs, "relationships", "variables", "data").([]any)) != 3 ||
		path(attrs, "invocation") != "java -Xms128M -Xmx4096M -jar server.jar" ||
		path(got, "meta", "user_permissions", 0) != "*" || path(attrs, "server_owner") != true {
		t.Errorf("view = %v", got)
	}
	allocs := get(t, clientURL(t, s, url, 1)+"/network/allocations", aliceKey)
	if path(allocs, "data", 0, "attributes", "port") != 25565.0 {
		t.Errorf("allocations = %v", allocs)
	}
}

func TestWebsocketTokenCarriesThePanelClaims(t *testing.T) {
	s, url := newSim(t)
	g := mustServer(t, s, 1)
	data := get(t, clientURL(t, s, url, 1)+"/websocket", aliceKey)["data"].(map[string]any)
	if want := strings.Replace(url, "http", "ws", 1) + "/api/servers/" + g.UUID + "/ws"; data["socket"] != want {
		t.Errorf("socket %v, want %s", data["socket"], want)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(data["token"].(string), claims, func(*jwt.Token) (any, error) { return []byte(nodeSecret), nil })
	if err != nil || tok.Method.Alg() != "HS256" {
		t.Fatalf("token: %v", err)
	}
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if claims["server_uuid"] != g.UUID || claims["user_uuid"] != "9b5f2c1e-0000-4000-8000-000000000002" ||
		claims["user_id"] != 2.0 || path(map[string]any(claims), "permissions", 0) != "*" || claims["unique_id"] == "" ||
		claims["iss"] != panelURL || exp.Sub(iat.Time) != 10*time.Minute {
		t.Errorf("claims = %v", claims)
	}
}

func TestClientReinstallIsAccepted(t *testing.T) {
	s, url := newSim(t)
	if r := do(t, "POST", clientURL(t, s, url, 2)+"/settings/reinstall", aliceKey, nil); r.status != http.StatusAccepted {
		t.Fatalf("reinstall: %d %s", r.status, r.body)
	}
	if g := mustServer(t, s, 2); g.Status != sim.StatusInstalling {
		t.Errorf("status %q, want installing", g.Status)
	}
}

func TestBackupCompletesAfterItsTask(t *testing.T) {
	s, url := newSim(t)
	base := clientURL(t, s, url, 1)
	r := do(t, "POST", base+"/backups", aliceKey, map[string]any{"name": "before update", "ignored": "logs\n*.tmp"})
	if r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	b := r.json(t)["attributes"].(map[string]any)
	if b["completed_at"] != nil || b["is_successful"] != false || b["name"] != "before update" || path(b, "ignored_files", 1) != "*.tmp" {
		t.Errorf("new backup = %v", b)
	}
	adaptertest.Eventually(t, "the backup", func() bool {
		return path(get(t, base+"/backups/"+b["uuid"].(string), aliceKey), "attributes", "completed_at") != nil
	})
	done := get(t, base+"/backups/"+b["uuid"].(string), aliceKey)["attributes"]
	if path(done, "is_successful") != true || !strings.HasPrefix(path(done, "checksum").(string), "sha1:") || path(done, "bytes") == 0.0 {
		t.Errorf("completed backup = %v", done)
	}
	list := get(t, base+"/backups", aliceKey)
	if path(list, "meta", "backup_count") != 1.0 || path(list, "meta", "pagination", "total") != 1.0 {
		t.Errorf("list meta = %v", list["meta"])
	}
	if got := s.Backups(1); len(got) != 1 || !got[0].Successful || got[0].Name != "before update" {
		t.Errorf("Backups(1) = %+v", got)
	}
}

func TestBackupLimitRefusesOneMore(t *testing.T) {
	s, url := newSim(t)
	base := clientURL(t, s, url, 2)
	if r := do(t, "POST", base+"/backups", aliceKey, nil); r.status != 200 {
		t.Fatalf("first backup: %d %s", r.status, r.body)
	}
	wantError(t, do(t, "POST", base+"/backups", aliceKey, nil), 400, "TooManyBackupsException",
		"Cannot create a new backup, this server has reached its limit of 1 backups.")
}

func TestBackupThrottleAnswers429WithRetryAfter(t *testing.T) {
	s, url := newSim(t, func(c *sim.Config) { c.BackupThrottleLimit, c.BackupThrottlePeriod = 1, 10*time.Minute })
	base := clientURL(t, s, url, 1)
	do(t, "POST", base+"/backups", aliceKey, nil)
	r := do(t, "POST", base+"/backups", aliceKey, nil)
	wantError(t, r, 429, "TooManyRequestsHttpException", "Only 1 backups may be generated within a 600 second span of time.")
	if ra := r.header.Get("Retry-After"); ra != "600" {
		t.Errorf("Retry-After %q, want 600", ra)
	}
}

// completedBackup makes a backup on server 1 and waits for it.
func completedBackup(t *testing.T, base string) string {
	t.Helper()
	r := do(t, "POST", base+"/backups", aliceKey, nil)
	id := path(r.json(t), "attributes", "uuid").(string)
	adaptertest.Eventually(t, "the backup", func() bool {
		return path(get(t, base+"/backups/"+id, aliceKey), "attributes", "completed_at") != nil
	})
	return id
}

func TestLockedBackupCannotBeDeleted(t *testing.T) {
	s, url := newSim(t)
	base := clientURL(t, s, url, 1)
	id := completedBackup(t, base)
	if got := path(get(t, base+"/backups/"+id, aliceKey), "attributes", "is_locked"); got != false {
		t.Fatalf("new backup locked: %v", got)
	}
	if r := do(t, "POST", base+"/backups/"+id+"/lock", aliceKey, nil); path(r.json(t), "attributes", "is_locked") != true {
		t.Fatalf("lock: %s", r.body)
	}
	wantError(t, do(t, "DELETE", base+"/backups/"+id, aliceKey, nil), 400, "BackupLockedException",
		"Cannot delete a backup that is marked as locked.")
	do(t, "POST", base+"/backups/"+id+"/lock", aliceKey, nil)
	if r := do(t, "DELETE", base+"/backups/"+id, aliceKey, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete unlocked: %d %s", r.status, r.body)
	}
	wantError(t, do(t, "GET", base+"/backups/"+id, aliceKey, nil), 404, "NotFoundHttpException",
		"The requested resource could not be found on the server.")
}

func TestRestoreNeedsACompletedBackup(t *testing.T) {
	s, url := newSim(t)
	base := clientURL(t, s, url, 1)
	r := do(t, "POST", base+"/backups", aliceKey, nil)
	running := path(r.json(t), "attributes", "uuid").(string)
	if r := do(t, "POST", base+"/backups/"+running+"/restore", aliceKey, map[string]any{}); r.status != 422 ||
		errorsOf(t, r)[0] != (apiErr{"ValidationException", "422", "The truncate field is required.", "truncate", "required"}) {
		t.Errorf("restore without truncate: %d %s", r.status, r.body)
	}
	wantError(t, do(t, "POST", base+"/backups/"+running+"/restore", aliceKey, map[string]any{"truncate": true}), 400,
		"BadRequestHttpException", "This backup cannot be restored at this time: not completed or failed.")
}

// TestRestoreOfAFailedBackupIsAccepted: the panel refuses only a backup
// still running (!is_successful && completed_at null); one that completed
// without success goes to Wings.
func TestRestoreOfAFailedBackupIsAccepted(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "backups.create", Times: 1, TaskError: "disk full"})
	base := clientURL(t, s, url, 1)
	id := path(do(t, "POST", base+"/backups", aliceKey, nil).json(t), "attributes", "uuid").(string)
	adaptertest.Eventually(t, "the failed backup", func() bool {
		return path(get(t, base+"/backups/"+id, aliceKey), "attributes", "completed_at") != nil
	})
	if r := do(t, "POST", base+"/backups/"+id+"/restore", aliceKey, map[string]any{"truncate": false}); r.status != 204 {
		t.Fatalf("restore of a failed backup: %d %s, want 204", r.status, r.body)
	}
	if g := mustServer(t, s, 1); g.Status != sim.StatusRestoringBackup {
		t.Errorf("server restoring a failed backup is %q", g.Status)
	}
	adaptertest.Eventually(t, "the restore", func() bool { return mustServer(t, s, 1).Status == "" })
}

func TestRestoreRunsAsATask(t *testing.T) {
	s, url := newSim(t, slow)
	base := clientURL(t, s, url, 1)
	id := completedBackup(t, base)
	if r := do(t, "POST", base+"/backups/"+id+"/restore", aliceKey, map[string]any{"truncate": false}); r.status != 204 {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	if g := mustServer(t, s, 1); g.Status != sim.StatusRestoringBackup || g.State != sim.StateOffline {
		t.Errorf("restoring server is %q/%q", g.Status, g.State)
	}
	wantError(t, do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}), 409, "ServerStateConflictException",
		"This server is currently restoring from a backup, please try again later.")
	adaptertest.Eventually(t, "the restore", func() bool { return mustServer(t, s, 1).Status == "" })
}

func TestDownloadURLWorksOnceAndExpires(t *testing.T) {
	s, url := newSim(t)
	base := clientURL(t, s, url, 1)
	id := completedBackup(t, base)
	link := func() string {
		got := get(t, base+"/backups/"+id+"/download", aliceKey)
		if got["object"] != "signed_url" {
			t.Fatalf("download: %v", got)
		}
		return path(got, "attributes", "url").(string)
	}
	fetch := func(u string) (int, string) {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	u := link()
	if status, body := fetch(u); status != 200 || !strings.Contains(body, id) {
		t.Errorf("first download: %d %s", status, body)
	}
	if status, body := fetch(u); status != 404 || !strings.Contains(body, "The requested resource was not found on this server.") {
		t.Errorf("second download: %d %s", status, body)
	}
	u = link()
	s.AdvanceClock(16 * time.Minute)
	if status, body := fetch(u); status != 500 || !strings.Contains(body, `"error"`) {
		t.Errorf("expired link: %d %s", status, body)
	}
}

func TestStartOnCompletionBootsTheInstalledServer(t *testing.T) {
	s, url := newSim(t)
	body := newServerBody()
	body["start_on_completion"] = true
	r := do(t, "POST", url+"/api/application/servers", appKey, body)
	id := int(path(r.json(t), "attributes", "id").(float64))
	adaptertest.Eventually(t, "the server to run", func() bool { return mustServer(t, s, id).State == sim.StateRunning })
}

func TestAddedUserAndServerAreReachableWithItsKey(t *testing.T) {
	const carolKey = "ptlc_carol000000000000000000000000000000000000"
	s, url := newSim(t, func(c *sim.Config) { c.ClientKeys = map[string]int{carolKey: 9} })
	if _, err := s.AddUser(sim.User{ID: 9, Username: "carol", Email: "carol@example.test"}); err != nil {
		t.Fatal(err)
	}
	g, err := s.AddServer(sim.GameServer{Name: "Carol's", OwnerID: 9, EggID: 1, AllocationID: 6})
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, url+"/api/client/servers/"+g.Identifier, carolKey); path(got, "attributes", "server_owner") != true {
		t.Errorf("carol's view: %v", got)
	}
	if _, err := s.AddServer(sim.GameServer{Name: "Twice", OwnerID: 9, EggID: 1, AllocationID: 6}); err == nil {
		t.Error("AddServer took an allocation already taken")
	}
}
