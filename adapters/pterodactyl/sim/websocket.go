package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// message is one websocket frame, {"event":"...","args":["..."]}.
type message struct {
	Event string   `json:"event"`
	Args  []string `json:"args,omitempty"`
}

// wsConn is one viewer of a server's console on Wings' websocket.
type wsConn struct {
	s    *Server
	gs   *serverState
	ws   *websocket.Conn
	out  chan message
	done chan struct{}
	once sync.Once

	// listening is set, under the Server's lock, once the first auth has
	// registered the viewer for the server's events.
	listening bool

	mu     sync.Mutex
	claims *wsClaims // nil until the first auth
	reason string    // the close frame's reason, when the server closes it
}

// serveWebsocket is Wings' GET /api/servers/{uuid}/ws.
func (s *Server) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	idx := s.Begin(r, "ws.connect", "")
	s.Finish(idx, s.upgrade(w, r, idx))
}

func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, idx int) int {
	s.mu.Lock()
	var gs *serverState
	for _, x := range s.servers {
		if x.UUID == r.PathValue("uuid") {
			gs = x
		}
	}
	s.mu.Unlock()
	if gs == nil {
		return wingsError(w, http.StatusNotFound, "The requested resource does not exist on this instance.")
	}
	s.SetTarget(idx, gs.Identifier)
	f := s.Next("ws.connect", gs.Identifier)
	if !s.Wait(r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		return wingsFault(w, f)
	}
	origin := s.originAllowed(r)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return origin }}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered: 403 for the Origin, 400 for a bad
		// handshake.
		if !origin {
			return http.StatusForbidden
		}
		return http.StatusBadRequest
	}
	if f.Drop {
		ws.NetConn().Close()
		return http.StatusSwitchingProtocols
	}
	c := &wsConn{s: s, gs: gs, ws: ws, out: make(chan message, 256), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed || gs.deleted {
		s.mu.Unlock()
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	// Tracked from the start, as Wings does, so that deleting the server
	// closes connections that have not authenticated yet.
	s.conns[c] = true
	gs.conns[c] = true
	s.mu.Unlock()
	go c.writeLoop()
	go c.readLoop()
	return http.StatusSwitchingProtocols
}

// originAllowed is Wings' CheckOrigin: the panel's URL or an allowed
// origin.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == s.panelURL(r) || slices.Contains(s.cfg.AllowedOrigins, "*") || slices.Contains(s.cfg.AllowedOrigins, o)
}

// close ends the connection.
func (c *wsConn) close() { c.once.Do(func() { close(c.done) }) }

// closeWith ends the connection with a going-away close frame, as Wings
// does when the server is deleted.
func (c *wsConn) closeWith(reason string) {
	c.mu.Lock()
	c.reason = reason
	c.mu.Unlock()
	c.close()
}

func (c *wsConn) writeLoop() {
	defer c.ws.Close()
	for {
		select {
		case m := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.ws.WriteJSON(m); err != nil {
				c.close()
				return
			}
		case <-c.done:
			c.mu.Lock()
			reason := c.reason
			c.mu.Unlock()
			if reason != "" {
				c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, reason),
					time.Now().Add(time.Second))
			}
			return
		}
	}
}

// readLoop handles the client's messages in order until it leaves;
// frames that are not JSON are ignored, as Wings ignores them.
func (c *wsConn) readLoop() {
	defer func() {
		c.close()
		c.s.mu.Lock()
		delete(c.gs.conns, c)
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	for {
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m message
		if json.Unmarshal(p, &m) == nil {
			c.inbound(m)
		}
	}
}

// rawSend queues a message whatever the token's state; a viewer too slow
// to keep up is disconnected.
func (c *wsConn) rawSend(m message) {
	select {
	case c.out <- m:
	case <-c.done:
	default:
		c.close()
	}
}

// send is Wings' SendJson: with an invalid token the viewer gets a jwt
// error instead, and install output and backup events only reach tokens
// with the permission to see them. It may be called with the lock held.
func (c *wsConn) send(m message) {
	if err := c.tokenValid(); err != nil {
		c.rawSend(message{Event: "jwt error", Args: []string{err.Error()}})
		return
	}
	perms := c.jwt().Permissions
	if (m.Event == "install output" && !hasPermission(perms, "admin.websocket.install")) ||
		(strings.HasPrefix(m.Event, "backup completed") && !hasPermission(perms, "backup.read")) {
		return
	}
	c.rawSend(m)
}

func (c *wsConn) jwt() *wsClaims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims
}

// tokenValid is Wings' check of the connection's token before each
// message.
func (c *wsConn) tokenValid() error {
	claims := c.jwt()
	switch {
	case claims == nil:
		return errNoJWT
	case c.s.checkExpiry(claims.ExpiresAt) != nil:
		return errExpired
	case claims.IssuedAt == nil || claims.IssuedAt.Before(c.s.bootTime):
		return errDenylisted
	case !hasPermission(claims.Permissions, "websocket.connect"):
		return errNoConnect
	case claims.ServerUUID != c.gs.UUID:
		return errUUIDMismatch
	}
	return nil
}

// sendError is Wings' SendErrorJson: JWT errors as "jwt error", anything
// else as "daemon error" with its text only for tokens allowed to see
// errors, each tagged with an error id.
func (c *wsConn) sendError(err error) {
	event, text := "daemon error", "an unexpected error was encountered while handling this request"
	isJWT := slices.ContainsFunc([]error{errNoJWT, errNoConnect, errUUIDMismatch, errDenylisted, errExpired},
		func(e error) bool { return errors.Is(err, e) })
	if claims := c.jwt(); isJWT || (claims != nil && hasPermission(claims.Permissions, "admin.websocket.errors")) {
		if isJWT {
			event = "jwt error"
		}
		text = err.Error()
	}
	c.rawSend(message{Event: event, Args: []string{errorEvent(text)}})
}

// errorEvent tags a message with an error id, as Wings' GetErrorMessage.
func errorEvent(text string) string {
	return fmt.Sprintf("Error Event [%s]: %s", uuid.NewString(), text)
}

// inbound handles one client message.
func (c *wsConn) inbound(m message) {
	arg := strings.Join(m.Args, "")
	if m.Event != "auth" {
		if err := c.tokenValid(); err != nil {
			c.rawSend(message{Event: "jwt error", Args: []string{err.Error()}})
			return
		}
	}
	s, gs := c.s, c.gs
	switch m.Event {
	case "auth":
		c.auth(arg)
	case "set state":
		perm := map[string]string{"start": "control.start", "stop": "control.stop", "restart": "control.restart", "kill": "control.stop"}[arg]
		if perm != "" && !hasPermission(c.jwt().Permissions, perm) {
			return
		}
		s.mu.Lock()
		err := s.power(gs, arg, "")
		s.mu.Unlock()
		switch {
		case errors.Is(err, errBusy):
			c.send(message{Event: "daemon error", Args: []string{errorEvent(err.Error())}})
		case err != nil:
			c.sendError(err)
		}
	case "send logs":
		s.mu.Lock()
		if gs.State != StateOffline {
			for _, line := range gs.console {
				c.send(message{Event: "console output", Args: []string{line}})
			}
		}
		s.mu.Unlock()
	case "send stats":
		s.mu.Lock()
		b, _ := json.Marshal(s.stats(gs))
		s.mu.Unlock()
		c.send(message{Event: "stats", Args: []string{string(b)}})
	case "send command":
		if !hasPermission(c.jwt().Permissions, "control.console") {
			return
		}
		s.mu.Lock()
		if gs.State != StateOffline && !gs.deleted {
			s.command(gs, arg)
		}
		s.mu.Unlock()
	}
}

// auth takes a token. The first one registers the viewer for the server's
// events and sends its status (and, when offline, its stats); a later one
// only replaces the token, which is how a viewer renews it without
// reconnecting.
func (c *wsConn) auth(token string) {
	claims, err := c.s.parseWebsocketToken(token)
	if err != nil {
		c.sendError(err)
		return
	}
	c.mu.Lock()
	first := c.claims == nil
	c.claims = claims
	c.mu.Unlock()
	c.rawSend(message{Event: "auth success"})
	if !first {
		return
	}
	s, gs := c.s, c.gs
	s.mu.Lock()
	if !gs.deleted {
		c.listening = true
		c.send(message{Event: "status", Args: []string{gs.State}})
		if gs.State == StateOffline && gs.Status != StatusInstalling {
			b, _ := json.Marshal(s.stats(gs))
			c.send(message{Event: "stats", Args: []string{string(b)}})
		}
	}
	s.mu.Unlock()
	go c.watchExpiry()
}

// watchExpiry checks the token every TokenCheckInterval: "token expiring"
// once 60 seconds or less remain, "token expired" once it has run out.
func (c *wsConn) watchExpiry() {
	t := time.NewTicker(c.s.cfg.TokenCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			claims := c.jwt()
			if claims == nil || claims.ExpiresAt == nil {
				continue
			}
			switch left := claims.ExpiresAt.Unix() - c.s.now().Unix(); {
			case left <= 0:
				// Sent past the token check (Wings' own SendJson would turn
				// it into "jwt error: jwt: exp claim is invalid").
				c.rawSend(message{Event: "token expired"})
			case left <= 60:
				c.send(message{Event: "token expiring"})
			}
		}
	}
}
