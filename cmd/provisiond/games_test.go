package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	pterosim "github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web/apikey"
)

const gameOrder = `{"name":"mc","provider":"pterodactyl","plan":{"memoryMb":2048,"diskMb":10240,"cpu":200,
	"databases":1,"allocations":1,"backups":2,"nest":1,"egg":1,"locations":[1],"user":2,
	"environment":{"SERVER_JARFILE":"paper.jar"}}}`

// gameServer provisions a game server and returns its service's API path.
func (s *system) gameServer() string {
	s.t.Helper()
	svc, id := s.provision(gameOrder)
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		s.t.Fatalf("game provision ended %s: %v", job["status"], job["error"])
	}
	return "/api/services/" + svc
}

func TestGameServerProvisionInstallsOneServer(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	servers := s.ptero.Servers()
	n := 0
	for _, g := range servers {
		if strings.HasSuffix(path, g.ExternalID) && g.ExternalID != "" {
			n++
			if g.Environment["SERVER_JARFILE"] != "paper.jar" || g.Limits.Memory != 2048 {
				t.Errorf("game server %+v: want the plan's limits and variables", g)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d servers carry the service as external id, want 1", n)
	}
	_, resp := s.do("GET", path, "")
	if svc := resp["service"].(map[string]any); svc["status"] != "active" {
		t.Errorf("service after provision: %v", svc)
	}
	if status, resp := s.do("GET", path+"/allocations", ""); status != http.StatusOK || len(resp["allocations"].([]any)) == 0 {
		t.Errorf("allocations: %d %v", status, resp)
	}
}

func TestGameReinstallWithBadVariablesIsRefusedBeforeAnyJob(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	status, resp := s.do("POST", path+"/reinstall", `{"environment":{"SERVER_JARFILE":"not a jar","BUILD_NUMBER":"7","NOPE":"x"}}`)
	errs, _ := resp["validationErrors"].([]any)
	if status != http.StatusBadRequest || resp["error"] != "Validation failed for egg variables" || len(errs) != 3 {
		t.Fatalf("reinstall with bad variables: %d %v; want 400 with one line per variable", status, resp)
	}
	s.runJob("POST", path+"/reinstall", `{"environment":{"SERVER_JARFILE":"other.jar"}}`)
}

func TestGamePowerBackupsAndPlanChange(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	s.runJob("POST", path+"/action", `{"action":"start"}`)
	_, resp := s.do("GET", path, "")
	if svc := resp["service"].(map[string]any); svc["powerState"] != "running" {
		t.Errorf("after start: %v", svc["powerState"])
	}
	job := s.runJob("POST", path+"/backups", `{"note":"nightly"}`)
	backup := job["result"].(map[string]any)["backup"].(map[string]any)["id"].(string)
	if status, resp := s.do("GET", path+"/backups/"+backup+"/download", ""); status != http.StatusOK || !strings.Contains(resp["url"].(string), "token=") {
		t.Errorf("download URL: %d %v", status, resp)
	}
	s.runJob("POST", path+"/backups/"+backup, `{"truncate":true}`)
	s.runJob("DELETE", path+"/backups/"+backup, "")
	s.runJob("POST", path+"/change-plan", `{"plan":{"memoryMb":4096,"diskMb":20480,"cpu":300,"databases":1,"allocations":1,"backups":3,"nest":1,"egg":1,"locations":[1],"user":2}}`)
	for _, g := range s.ptero.Servers() {
		if strings.HasSuffix(path, g.ExternalID) && g.ExternalID != "" && (g.Limits.Memory != 4096 || g.State != "running") {
			t.Errorf("after the plan change: %d MiB, %s; want 4096 and running again", g.Limits.Memory, g.State)
		}
	}
	s.runJob("POST", path+"/action", `{"action":"suspend"}`)
	if status, resp := s.do("PUT", path+"/startup-variables", `{"key":"SERVER_JARFILE","value":"x.jar"}`); status != http.StatusConflict {
		t.Errorf("startup variable of a suspended service: %d %v, want 409", status, resp)
	}
}

// sseReader reads a server-sent event stream.
type sseReader struct {
	t    *testing.T
	body io.ReadCloser
	sc   *bufio.Scanner
}

func (s *system) openStream(path string) *sseReader {
	s.t.Helper()
	res, err := s.client.Get(s.api + path)
	if err != nil {
		s.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		s.t.Fatalf("stream %s: %d %s", path, res.StatusCode, b)
	}
	s.t.Cleanup(func() { res.Body.Close() })
	return &sseReader{t: s.t, body: res.Body, sc: bufio.NewScanner(res.Body)}
}

// next returns the next event's type and data.
func (r *sseReader) next() (string, string) {
	r.t.Helper()
	var typ, data string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && typ != "":
			return typ, data
		case strings.HasPrefix(line, "event: "):
			typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
	r.t.Fatalf("stream ended: %v", r.sc.Err())
	return "", ""
}

// waitFor reads until an event of typ whose data contains want.
func (r *sseReader) waitFor(typ, want string) {
	r.t.Helper()
	for {
		if ty, data := r.next(); ty == typ && strings.Contains(data, want) {
			return
		}
	}
}

func TestGameConsoleStreamsToViewersAndTakesCommands(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	s.runJob("POST", path+"/action", `{"action":"start"}`)
	status, resp := s.do("POST", path+"/console", "")
	if status != http.StatusOK {
		t.Fatalf("console: %d %v", status, resp)
	}
	console := resp["console"].(map[string]any)
	stream := console["stream"].(string)
	raw, _ := json.Marshal(resp)
	if strings.Contains(string(raw), "ws://") || strings.Contains(string(raw), "eyJ") {
		t.Errorf("the console answer shows the Wings socket or its JWT: %s", raw)
	}
	viewers := []*sseReader{s.openStream(stream), s.openStream(stream)}
	for _, v := range viewers {
		v.waitFor("connection", "connected")
	}
	if status, resp := s.do("POST", path+"/console/command", `{"command":"say hello from the panel"}`); status != http.StatusAccepted {
		t.Fatalf("command: %d %v", status, resp)
	}
	for _, v := range viewers {
		v.waitFor("console", "hello from the panel")
	}
	if res, err := s.client.Get(s.api + path + "/console/stream?token=forged"); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged viewer token: %v %v, want 401", res, err)
	}
	if status, _ := s.do("POST", path+"/console/command", `{"signal":"explode"}`); status != http.StatusBadRequest {
		t.Errorf("unknown signal: %d, want 400", status)
	}
	s.runJob("POST", path+"/action", `{"action":"stop"}`)
	if status, resp := s.do("POST", path+"/console/command", `{"command":"say anyone?"}`); status != http.StatusConflict || resp["errorKey"] != "server_offline" {
		t.Errorf("command to a stopped server: %d %v, want 409 server_offline", status, resp)
	}
}

func TestGameInstallOutputReachesTheJobLog(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond})
	_, id := s.provision(gameOrder)
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("provision ended %s: %v", job["status"], job["error"])
	}
	events, err := s.q.ListJobEvents(context.Background(), queries.ListJobEventsParams{JobID: uuid.MustParse(id)})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range events {
		if e.Type == "log" {
			lines = append(lines, e.Message)
		}
	}
	if len(lines) == 0 {
		t.Errorf("no install output in the job's log; events %v", events)
	}
}

// pteroServer returns the id of the simulated game server behind a game
// service's API path.
func (s *system) pteroServer(path string) int {
	s.t.Helper()
	for _, g := range s.ptero.Servers() {
		if g.ExternalID != "" && strings.HasSuffix(path, "/"+g.ExternalID) {
			return g.ID
		}
	}
	s.t.Fatalf("no game server behind %s", path)
	return 0
}

// TestGamePowerOnAFailedInstallFailsAtOnce: the panel refuses a server whose
// install failed with the 409 it gives one still installing; the job reads
// the server's status and gives up at once, saying why.
func TestGamePowerOnAFailedInstallFailsAtOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	if err := s.ptero.SetStatus(s.pteroServer(path), pterosim.StatusInstallFailed); err != nil {
		t.Fatal(err)
	}
	job := s.waitJob(s.startJob("POST", path+"/action", `{"action":"start"}`), 30*time.Second)
	if job["status"] != "failed" || job["attempts"] != 1.0 {
		t.Fatalf("job %s after %v attempts (%v); want failed after 1", job["status"], job["attempts"], job["error"])
	}
	if msg, _ := job["error"].(string); msg != pterodactyl.InstallFailedMessage {
		t.Errorf("error %q, want %q", msg, pterodactyl.InstallFailedMessage)
	}
}

// TestGamePowerWhileInstallingIsRetried: the same 409 on a server still
// installing clears by itself, so the job tries again until it does.
func TestGamePowerWhileInstallingIsRetried(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	srv := s.pteroServer(path)
	if err := s.ptero.SetStatus(srv, pterosim.StatusInstalling); err != nil {
		t.Fatal(err)
	}
	id := s.startJob("POST", path+"/action", `{"action":"start"}`)
	jobtest.Eventually(t, 20*time.Second, "a retry of the start", func() bool {
		job := s.job(id)
		if st := job["status"]; st == "succeeded" || st == "failed" || st == "cancelled" {
			t.Fatalf("job ended %s (%v) while the server was installing", job["status"], job["error"])
		}
		return job["attempts"].(float64) >= 2
	})
	if err := s.ptero.SetStatus(srv, ""); err != nil {
		t.Fatal(err)
	}
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("job ended %s: %v", job["status"], job["error"])
	}
	if g, _ := s.ptero.Server(srv); g.State != pterosim.StateRunning {
		t.Errorf("server is %s after the start, want running", g.State)
	}
}

// TestGameRestoreOfAFailedBackupIsThePanelsToRefuse: a backup that
// completed without success goes to the panel, which accepts it; a
// refusal of the panel fails the job at once in its words.
func TestGameRestoreOfAFailedBackupIsThePanelsToRefuse(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	srv := s.pteroServer(path)
	s.ptero.Inject(simkit.Fault{Op: "backups.create", Times: 1, TaskError: "disk full"})
	if job := s.waitJob(s.startJob("POST", path+"/backups", `{"note":"nightly"}`), 30*time.Second); job["status"] != "failed" {
		t.Fatalf("backup job ended %s, want failed", job["status"])
	}
	backups := s.ptero.Backups(srv)
	if len(backups) != 1 || backups[0].Successful || backups[0].CompletedAt.IsZero() {
		t.Fatalf("backups %+v, want one that failed", backups)
	}
	failed := backups[0].UUID

	s.runJob("POST", path+"/backups/"+failed, `{"truncate":false}`)
	restores := 0
	for _, c := range s.ptero.Calls() {
		if c.Op == "backups.restore" && c.Target == failed && c.Status == http.StatusNoContent {
			restores++
		}
	}
	if restores != 1 {
		t.Errorf("the panel accepted %d restores of the failed backup, want 1", restores)
	}

	// The panel restores only onto a server in a normal state.
	if err := s.ptero.SetStatus(srv, pterosim.StatusReinstallFailed); err != nil {
		t.Fatal(err)
	}
	job := s.waitJob(s.startJob("POST", path+"/backups/"+failed, `{"truncate":false}`), 30*time.Second)
	const refusal = "This server is not currently in a state that allows for a backup to be restored."
	if msg, _ := job["error"].(string); job["status"] != "failed" || job["attempts"] != 1.0 || msg != refusal {
		t.Errorf("refused restore: job %s after %v attempts saying %q; want failed after 1 saying %q",
			job["status"], job["attempts"], msg, refusal)
	}
}

// TestGameReinstallThatFailsFailsTheJob: the panel marks a failed reinstall
// reinstall_failed, which it counts as installed; the job still fails.
func TestGameReinstallThatFailsFailsTheJob(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	s.ptero.Inject(simkit.Fault{Op: "servers.reinstall", Times: 1, TaskError: "install script exited 1"})
	job := s.waitJob(s.startJob("POST", path+"/reinstall", ""), 30*time.Second)
	if msg, _ := job["error"].(string); job["status"] != "failed" || !strings.Contains(msg, "reinstall failed") {
		t.Fatalf("job %s (%q); want failed saying the reinstall failed", job["status"], msg)
	}
}

// TestARevokedGranteesConsoleEnds: a person of another team, given the
// console of a game server, watches it through a viewer token; once the
// grant is revoked the stream ends and the token opens nothing more.
func TestARevokedGranteesConsoleEnds(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	s.runJob("POST", path+"/action", `{"action":"start"}`)
	svc := strings.TrimPrefix(path, "/api/services/")
	friend, grant := s.grantee("friend@example.test", svc, `["view","console"]`)
	status, resp := s.doWith(friend, "POST", path+"/console", "")
	if status != http.StatusOK {
		t.Fatalf("console: %d %v", status, resp)
	}
	stream := resp["console"].(map[string]any)["stream"].(string)
	viewer := s.openStream(stream)
	viewer.waitFor("connection", "connected")
	if status, resp := s.do("DELETE", "/api/permissions/"+grant, ""); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, resp)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		viewer.waitFor("end", "access revoked")
	}()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the grantee's console stream went on after the grant was revoked")
	}
	if res, err := s.client.Get(s.api + stream); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked grantee's viewer token: %v %v, want 401", res, err)
	}
}

// grantee makes a person of another team to whom the demo team's key
// shares the service with perms, and who accepts; it returns the person's
// key and the grant's id.
func (s *system) grantee(email, service, perms string) (string, string) {
	s.t.Helper()
	ctx := context.Background()
	other, err := s.q.CreateTeam(ctx, "team-of-"+email)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := s.q.EnsurePerson(ctx, email)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.q.AddTeamMember(ctx, queries.AddTeamMemberParams{TeamID: other.ID, PersonID: p.ID, Role: "owner"}); err != nil {
		s.t.Fatal(err)
	}
	key, _, err := apikey.Create(ctx, s.q, apikey.Spec{TeamID: other.ID, PersonID: p.ID})
	if err != nil {
		s.t.Fatal(err)
	}
	status, resp := s.do("POST", "/api/permissions", `{"resourceId":"`+service+`","email":"`+email+`","permissions":`+perms+`}`)
	if status != http.StatusCreated {
		s.t.Fatalf("grant: %d %v", status, resp)
	}
	grant := resp["permission"].(map[string]any)["id"].(string)
	if status, resp := s.doWith(key, "POST", "/api/permissions/accept", `{"id":"`+grant+`"}`); status != http.StatusOK {
		s.t.Fatalf("accept: %d %v", status, resp)
	}
	return key, grant
}

// TestARemovedMembersConsoleEnds: a team member watches a game console
// through a viewer token; once they are removed from the team the stream
// ends and the token opens nothing more.
func TestARemovedMembersConsoleEnds(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	s.runJob("POST", path+"/action", `{"action":"start"}`)
	ctx := context.Background()
	team := s.services["web-1"].TeamID
	p, err := s.q.EnsurePerson(ctx, "leaving@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.q.AddTeamMember(ctx, queries.AddTeamMemberParams{TeamID: team, PersonID: p.ID, Role: "member"}); err != nil {
		t.Fatal(err)
	}
	member, _, err := apikey.Create(ctx, s.q, apikey.Spec{TeamID: team, PersonID: p.ID})
	if err != nil {
		t.Fatal(err)
	}
	status, resp := s.doWith(member, "POST", path+"/console", "")
	if status != http.StatusOK {
		t.Fatalf("console: %d %v", status, resp)
	}
	stream := resp["console"].(map[string]any)["stream"].(string)
	viewer := s.openStream(stream)
	viewer.waitFor("connection", "connected")
	if status, resp := s.do("DELETE", "/api/teams/"+team.String()+"/members/"+p.ID.String(), ""); status != http.StatusOK {
		t.Fatalf("remove: %d %v", status, resp)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		viewer.waitFor("end", "access revoked")
	}()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the removed member's console stream went on")
	}
	if res, err := s.client.Get(s.api + stream); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the removed member's viewer token: %v %v, want 401", res, err)
	}
}
