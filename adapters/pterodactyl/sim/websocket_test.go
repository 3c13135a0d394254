package sim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
)

// wsMsg is one websocket frame.
type wsMsg struct {
	Event string   `json:"event"`
	Args  []string `json:"args"`
}

// viewer is a console client on Wings' websocket.
type viewer struct {
	t *testing.T
	c *websocket.Conn
}

// credentials asks the panel for a websocket token and URL.
func credentials(t *testing.T, s *sim.Server, url string, id int, key string) (token, socket string) {
	t.Helper()
	data := get(t, clientURL(t, s, url, id)+"/websocket", key)["data"].(map[string]any)
	return data["token"].(string), data["socket"].(string)
}

// connect opens the socket with the panel's Origin and authenticates.
func connect(t *testing.T, s *sim.Server, url string, id int, key string) viewer {
	t.Helper()
	token, socket := credentials(t, s, url, id, key)
	v := dial(t, socket)
	v.send("auth", token)
	v.expect("auth success")
	return v
}

func dial(t *testing.T, socket string) viewer {
	t.Helper()
	c, res, err := websocket.DefaultDialer.Dial(socket, http.Header{"Origin": {panelURL}})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", socket, err, res)
	}
	t.Cleanup(func() { c.Close() })
	return viewer{t, c}
}

func (v viewer) send(event string, args ...string) {
	v.t.Helper()
	if err := v.c.WriteJSON(wsMsg{Event: event, Args: args}); err != nil {
		v.t.Fatalf("send %s: %v", event, err)
	}
}

// expect reads frames until one of the event arrives and returns it.
func (v viewer) expect(event string) wsMsg {
	v.t.Helper()
	m, ok := v.await(event, 3*time.Second)
	if !ok {
		v.t.Fatalf("no %q event", event)
	}
	return m
}

// expectArg reads frames until the event arrives with that first arg.
func (v viewer) expectArg(event, arg string) {
	v.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if m, ok := v.await(event, time.Until(deadline)); ok && len(m.Args) > 0 && m.Args[0] == arg {
			return
		}
	}
	v.t.Fatalf("no %q event with %q", event, arg)
}

// await reads frames until the event arrives or d passes.
func (v viewer) await(event string, d time.Duration) (wsMsg, bool) {
	v.c.SetReadDeadline(time.Now().Add(d))
	defer v.c.SetReadDeadline(time.Time{})
	for {
		var m wsMsg
		if err := v.c.ReadJSON(&m); err != nil {
			return wsMsg{}, false
		}
		if m.Event == event {
			return m, true
		}
	}
}

func TestWebsocketAuthSendsStatusThenEvents(t *testing.T) {
	s, url := newSim(t)
	v := connect(t, s, url, 2, aliceKey)
	if m := v.expect("status"); m.Args[0] != "offline" {
		t.Errorf("status %v, want offline", m.Args)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(v.expect("stats").Args[0]), &st); err != nil || st["state"] != "offline" {
		t.Errorf("stats of an offline server: %v %v", st, err)
	}
	v.send("set state", "start")
	v.expectArg("status", "starting")
	v.expectArg("status", "running")
	v.expect("console output")
	if err := json.Unmarshal([]byte(v.expect("stats").Args[0]), &st); err != nil || st["state"] != "running" || st["memory_bytes"] == 0.0 {
		t.Errorf("stats while running: %v %v", st, err)
	}
	if g := mustServer(t, s, 2); g.State != sim.StateRunning {
		t.Errorf("server is %s, want running", g.State)
	}
}

func TestWebsocketRefusesAForeignOrigin(t *testing.T) {
	s, url := newSim(t)
	_, socket := credentials(t, s, url, 1, aliceKey)
	_, res, err := websocket.DefaultDialer.Dial(socket, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from a foreign origin: %v %v", err, res)
	}
}

func TestWebsocketAllowsConfiguredOrigins(t *testing.T) {
	s, url := newSim(t, func(c *sim.Config) { c.AllowedOrigins = []string{"https://gateway.example"} })
	_, socket := credentials(t, s, url, 1, aliceKey)
	c, _, err := websocket.DefaultDialer.Dial(socket, http.Header{"Origin": {"https://gateway.example"}})
	if err != nil {
		t.Fatalf("dial from an allowed origin: %v", err)
	}
	c.Close()
}

// forge signs websocket claims for server 1 the way the panel does,
// changed by edit.
func forge(t *testing.T, s *sim.Server, secret string, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{"server_uuid": mustServer(t, s, 1).UUID, "permissions": []string{"*"}, "user_id": 2,
		"iat": now.Unix(), "nbf": now.Add(-5 * time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	edit(claims)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestWebsocketRefusesBadTokensAsWingsDoes(t *testing.T) {
	tests := []struct {
		name, secret string
		edit         func(jwt.MapClaims)
		event, text  string
	}{
		{"wrong secret", "not-the-secret", func(jwt.MapClaims) {}, "daemon error",
			"an unexpected error was encountered while handling this request"},
		{"expired", nodeSecret, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }, "jwt error",
			"jwt: exp claim is invalid"},
		{"without websocket.connect", nodeSecret, func(c jwt.MapClaims) { c["permissions"] = []string{"control.console"} }, "jwt error",
			"jwt: missing connect permission"},
		{"issued before Wings booted", nodeSecret, func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-time.Hour).Unix() }, "jwt error",
			"jwt: created too far in past (denylist)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := newSim(t)
			_, socket := credentials(t, s, url, 1, aliceKey)
			v := dial(t, socket)
			v.send("auth", forge(t, s, tt.secret, tt.edit))
			m := v.expect(tt.event)
			if len(m.Args) != 1 || !strings.HasPrefix(m.Args[0], "Error Event [") || !strings.HasSuffix(m.Args[0], "]: "+tt.text) {
				t.Errorf("%s %v, want ...]: %s", m.Event, m.Args, tt.text)
			}
		})
	}
}

func TestWebsocketNeedsAuthFirst(t *testing.T) {
	s, url := newSim(t)
	_, socket := credentials(t, s, url, 1, aliceKey)
	v := dial(t, socket)
	v.send("send stats")
	if m := v.expect("jwt error"); m.Args[0] != "jwt: no jwt present" {
		t.Errorf("jwt error %v", m.Args)
	}
}

func TestWebsocketTokenOfAnotherServerIsRefusedAfterAuth(t *testing.T) {
	s, url := newSim(t)
	other, _ := credentials(t, s, url, 2, aliceKey)
	_, socket := credentials(t, s, url, 1, aliceKey)
	v := dial(t, socket)
	v.send("auth", other)
	v.expect("auth success")
	if m := v.expect("jwt error"); m.Args[0] != "jwt: server uuid mismatch" {
		t.Errorf("jwt error %v", m.Args)
	}
}

func TestWebsocketTokenExpiresAndRenewsWithoutReconnecting(t *testing.T) {
	s, url := newSim(t, func(c *sim.Config) { c.TokenCheckInterval = 20 * time.Millisecond })
	v := connect(t, s, url, 2, aliceKey)
	v.expect("status")
	s.AdvanceClock(9*time.Minute + 30*time.Second)
	v.expect("token expiring")
	s.AdvanceClock(time.Minute)
	v.expect("token expired")
	v.send("send stats")
	if m := v.expect("jwt error"); m.Args[0] != "jwt: exp claim is invalid" {
		t.Errorf("after expiry: jwt error %v", m.Args)
	}
	fresh, _ := credentials(t, s, url, 2, aliceKey)
	v.send("auth", fresh)
	v.expect("auth success")
	v.send("send stats")
	v.expect("stats")
}

func TestEveryViewerGetsTheBroadcasts(t *testing.T) {
	s, url := newSim(t)
	a, b := connect(t, s, url, 2, aliceKey), connect(t, s, url, 2, adminKey)
	do(t, "POST", clientURL(t, s, url, 2)+"/power", aliceKey, map[string]any{"signal": "start"})
	a.expectArg("status", "running")
	b.expectArg("status", "running")
}

func TestSendLogsReplaysTheConsoleAndCommandsEcho(t *testing.T) {
	s, url := newSim(t)
	v := connect(t, s, url, 1, aliceKey)
	v.send("send command", "say hello")
	v.expectArg("console output", "> say hello")
	w := connect(t, s, url, 1, aliceKey)
	w.send("send logs")
	w.expectArg("console output", "> say hello")
}

func TestSetStateNeedsItsPermission(t *testing.T) {
	s, url := newSim(t)
	_, socket := credentials(t, s, url, 1, aliceKey)
	v := dial(t, socket)
	v.send("auth", forge(t, s, nodeSecret, func(c jwt.MapClaims) { c["permissions"] = []string{"websocket.connect"} }))
	v.expect("auth success")
	v.send("set state", "stop")
	v.send("send stats")
	v.expect("stats")
	if g := mustServer(t, s, 1); g.State != sim.StateRunning {
		t.Errorf("server is %s, want the stop ignored", g.State)
	}
}

func TestBusyPowerLockIsADaemonError(t *testing.T) {
	s, url := newSim(t, slow)
	v := connect(t, s, url, 1, aliceKey)
	v.send("set state", "stop")
	v.send("set state", "restart")
	if m := v.expect("daemon error"); !strings.HasSuffix(m.Args[0], "another power action is currently being processed for this server, please try again later") {
		t.Errorf("daemon error %v", m.Args)
	}
}

func TestInstallOutputReachesOnlyAdmins(t *testing.T) {
	s, url := newSim(t, slow)
	r := do(t, "POST", url+"/api/application/servers", appKey, newServerBody())
	id := int(path(r.json(t), "attributes", "id").(float64))
	wantError(t, do(t, "GET", clientURL(t, s, url, id)+"/websocket", aliceKey, nil), 409, "ServerStateConflictException",
		"This server has not yet completed its installation process, please try again later.")
	v := connect(t, s, url, id, adminKey)
	v.expect("install output")
	v.expect("install completed")
}

func TestDeletingTheServerClosesItsSockets(t *testing.T) {
	s, url := newSim(t)
	v := connect(t, s, url, 1, aliceKey)
	do(t, "DELETE", url+"/api/application/servers/1", appKey, nil)
	v.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		_, _, err := v.c.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) || !strings.Contains(err.Error(), "server deleted") {
			t.Errorf("closed with %v, want going away: server deleted", err)
		}
		return
	}
}
