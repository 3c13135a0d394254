package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// viewerTokenTTL bounds how long a console viewer token opens the stream.
const viewerTokenTTL = 5 * time.Minute

// viewerToken signs (service, key, expiry) so that a browser's
// EventSource, which cannot send headers, may open one service's console
// stream for the key that asked for it: the stream opens, and goes on,
// only while that key may use the console (see asKey).
func (s *Server) viewerToken(service, key uuid.UUID, expires time.Time) string {
	b := make([]byte, 0, viewerTokenLen)
	b = append(b, service[:]...)
	b = append(b, key[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(expires.Unix()))
	m := hmac.New(sha256.New, s.Config.ViewerKey)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(b))
}

const viewerTokenLen = 16 + 16 + 8 + sha256.Size

// viewerTokenValid checks a token for the service and returns the key it
// was asked for by.
func (s *Server) viewerTokenValid(token string, service uuid.UUID) (uuid.UUID, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != viewerTokenLen || len(s.Config.ViewerKey) == 0 {
		return uuid.Nil, false
	}
	svc, key := uuid.UUID(b[:16]), uuid.UUID(b[16:32])
	expires := time.Unix(int64(binary.BigEndian.Uint64(b[32:40])), 0)
	ok := hmac.Equal([]byte(s.viewerToken(svc, key, expires)), []byte(token)) && svc == service && time.Now().Before(expires)
	return key, ok
}

// gameConsole answers the URL of the game server's console stream and a
// viewer token for it.
func (s *Server) gameConsole(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	if len(s.Config.ViewerKey) == 0 || s.Games.Consoles == nil {
		return &apiError{Status: http.StatusServiceUnavailable, ErrorKey: "console_unavailable",
			Message: "Live consoles are not set up on this server"}
	}
	expires := time.Now().Add(viewerTokenTTL).UTC()
	token := s.viewerToken(svc.ID, callerOf(r).key.ID, expires)
	ok(w, http.StatusOK, "console", map[string]any{
		"stream":    fmt.Sprintf("/api/services/%s/console/stream?token=%s", svc.ID, token),
		"token":     token,
		"expiresAt": expires,
	})
	return nil
}

// gameStreamRoute serves the console stream to a viewer token (?token=)
// or, without one, through the API key chain in keyed.
func (s *Server) gameStreamRoute(keyed http.Handler) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		token := r.URL.Query().Get("token")
		if token == "" {
			keyed.ServeHTTP(w, r)
			return nil
		}
		invalid := &apiError{Status: http.StatusUnauthorized, ErrorKey: "invalid_viewer_token",
			Message: "The console token is invalid or has expired; ask for a new one"}
		id, err := uuid.Parse(r.PathValue("id"))
		key, valid := s.viewerTokenValid(token, id)
		if err != nil || !valid {
			return invalid
		}
		svc, err := s.Queries.GetService(r.Context(), id)
		if err != nil {
			return notFound("Service")
		}
		if r, err = s.asKey(r, key, svc); err != nil {
			return invalid
		}
		return s.streamGame(w, r, &svc)
	})
}

// gameStream serves the console stream to an API key.
func (s *Server) gameStream(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	return s.streamGame(w, r, &svc)
}

// streamGame relays the hub's events for one game server as server-sent
// events (console, status, stats, install, connection) until the viewer
// leaves, lags too far behind, or the console is lost.
func (s *Server) streamGame(w http.ResponseWriter, r *http.Request, svc *queries.Service) error {
	if s.Games == nil || s.Games.Consoles == nil {
		return &apiError{Status: http.StatusServiceUnavailable, ErrorKey: "console_unavailable",
			Message: "Live consoles are not set up on this server"}
	}
	if _, err := jobs.PterodactylRef(svc); err != nil {
		return &apiError{Status: http.StatusConflict, ErrorKey: "service_pending", Message: "Service is not provisioned yet"}
	}
	v, err := s.Games.WatchConsole(r.Context(), svc, svc.ID.String())
	if err != nil {
		return err
	}
	defer v.Close()
	rc, err := startEventStream(w)
	if err != nil {
		return err
	}
	keepAlive := time.NewTicker(s.keepAlive())
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case ev, open := <-v.Events():
			if !open {
				fmt.Fprintf(w, "event: end\ndata: %s\n\n", v.Err())
				rc.Flush()
				return nil
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\n", ev.Seq, ev.Type)
			for _, line := range strings.Split(ev.Data, "\n") {
				fmt.Fprintf(w, "data: %s\n", line)
			}
			fmt.Fprint(w, "\n")
			if len(v.Events()) == 0 {
				rc.Flush() // flush once a burst is written
			}
		case <-keepAlive.C:
			if !s.stillAllowed(r) {
				fmt.Fprint(w, "event: end\ndata: access revoked\n\n")
				rc.Flush()
				return nil
			}
			fmt.Fprint(w, ": keep-alive\n\n")
			rc.Flush()
		}
	}
}

// consoleCommand sends a command, or a power signal, to the game server
// through its console connection.
func (s *Server) consoleCommand(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	if s.Games.Consoles == nil {
		return &apiError{Status: http.StatusServiceUnavailable, ErrorKey: "console_unavailable",
			Message: "Live consoles are not set up on this server"}
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Command string `json:"command"`
		Signal  string `json:"signal"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	signals := []string{"start", "stop", "restart", "kill"}
	event, arg := "send command", req.Command
	switch {
	case req.Signal != "" && req.Command != "":
		return invalid("give either command or signal, not both")
	case req.Signal != "":
		if !slices.Contains(signals, req.Signal) {
			return invalid(oneOf("signal", signals))
		}
		event, arg = "set state", req.Signal
	case strings.TrimSpace(req.Command) == "" || len(req.Command) > 1024:
		return invalid("command is required and must be at most 1024 characters")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if event == "send command" {
		// Wings drops a command to a stopped server without a word.
		online, err := s.Games.Online(ctx, &svc)
		if err != nil {
			return providerError(err)
		}
		if !online {
			return &apiError{Status: http.StatusConflict, ErrorKey: "server_offline",
				Message: "The game server is offline; start it before sending console commands"}
		}
	}
	if err := s.Games.SendConsole(ctx, &svc, svc.ID.String(), event, arg); err != nil {
		return &apiError{Status: http.StatusBadGateway, ErrorKey: "provider_error", Message: "The game server's console did not take the command: " + err.Error()}
	}
	ok(w, http.StatusAccepted, "sent", true)
	return nil
}
