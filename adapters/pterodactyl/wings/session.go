package wings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// errDeleted: Wings deleted the server, so reconnecting is pointless.
var errDeleted = errors.New("wings deleted the server")

// message is one Wings websocket frame, {"event":"...","args":["..."]}.
type message struct {
	Event string   `json:"event"`
	Args  []string `json:"args,omitempty"`
}

// session is one websocket connection to Wings.
type session struct {
	u   *upstream
	ws  *websocket.Conn
	ctx context.Context // ends with the connection
	wg  sync.WaitGroup  // token renewals and the keepalive

	wmu sync.Mutex // gorilla allows one writer at a time

	seen       atomic.Int64 // when Wings last sent a frame, in Unix nanoseconds
	renewing   atomic.Bool  // a fresh token is being fetched or awaits auth success
	renewSince atomic.Int64 // when that began, in Unix nanoseconds

	mu       sync.Mutex
	token    string   // the token in use, never to appear in an error
	hidden   []string // the socket URL and its parts, likewise
	abortErr error    // why the connection was cut from our side
}

// connect runs one connection: credentials, dial, auth, then events until
// it ends. connected says whether Wings accepted the token; the error says
// why it ended, with the token and socket URL redacted.
func (u *upstream) connect(reconnect bool) (connected bool, err error) {
	ctx, cancel := context.WithTimeout(u.ctx, connectTimeout)
	defer cancel()
	token, socketURL, err := u.creds(ctx)
	if err != nil {
		return false, fmt.Errorf("fetching credentials: %w", err)
	}
	s := &session{u: u, token: token, hidden: hide(socketURL)}
	ws, res, err := u.h.cfg.Dialer.DialContext(ctx, socketURL, http.Header{"Origin": {u.h.cfg.Origin}})
	if err != nil {
		if res != nil {
			return false, fmt.Errorf("wings refused the websocket: %s", res.Status)
		}
		return false, s.redact(fmt.Errorf("dialing wings: %w", err))
	}
	s.ws = ws
	sctx, scancel := context.WithCancel(u.ctx)
	s.ctx = sctx
	// Ending the upstream says goodbye to Wings and unblocks the reader.
	bye := context.AfterFunc(u.ctx, func() {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
		ws.Close()
	})
	defer func() {
		bye()
		scancel()
		ws.Close()
		s.wg.Wait()
	}()

	if err := s.write("auth", token); err != nil {
		return false, err
	}
	deadline, _ := ctx.Deadline()
	ws.SetReadDeadline(deadline)
	if err := s.awaitAuth(); err != nil {
		return false, err
	}
	ws.SetReadDeadline(time.Time{})
	u.online(s, reconnect)
	defer u.offline()
	ws.SetPongHandler(func(string) error { s.seen.Store(time.Now().UnixNano()); return nil })
	s.wg.Add(1)
	go s.keepalive()
	if err := s.write("send logs"); err != nil {
		return true, err
	}
	return true, s.read()
}

// hide lists what of the socket URL must not appear in errors: the URL,
// its host with and without port, and its path (which names the server).
func hide(socketURL string) []string {
	out := []string{socketURL}
	if p, err := url.Parse(socketURL); err == nil {
		out = append(out, p.Host, p.Path, p.Hostname())
	}
	return slices.DeleteFunc(out, func(x string) bool { return x == "" })
}

// next reads one frame; frames that are not JSON come out empty, as Wings
// ignores such frames too.
func (s *session) next() (message, time.Time, error) {
	_, p, err := s.ws.ReadMessage()
	if err != nil {
		return message{}, time.Time{}, s.failure(err)
	}
	at := time.Now()
	s.seen.Store(at.UnixNano())
	var m message
	if json.Unmarshal(p, &m) != nil {
		return message{}, at, nil
	}
	return m, at, nil
}

// awaitAuth waits for Wings to accept the token.
func (s *session) awaitAuth() error {
	for {
		m, _, err := s.next()
		if err != nil {
			return err
		}
		switch m.Event {
		case "auth success":
			return nil
		case "jwt error", "daemon error":
			return fmt.Errorf("wings refused the token: %s", strings.Join(m.Args, " "))
		}
	}
}

// read relays Wings' events until the connection ends, renewing the
// token as Wings asks.
func (s *session) read() error {
	u := s.u
	reauths := 0 // renewals after a refusal since the last valid event
	for {
		m, at, err := s.next()
		if err != nil {
			return err
		}
		arg := ""
		if len(m.Args) > 0 {
			arg = m.Args[0]
		}
		switch m.Event {
		case "console output":
			u.publish(at, TypeConsole, arg)
			reauths = 0
		case "status":
			u.publish(at, TypeStatus, arg)
			reauths = 0
		case "stats":
			u.publish(at, TypeStats, arg)
			reauths = 0
		case "install output":
			u.publish(at, TypeInstall, arg)
			reauths = 0
		case "install started", "install completed":
			u.publish(at, TypeInstall, m.Event)
			reauths = 0
		case "daemon message", "daemon error":
			// The panel prints both in the terminal.
			u.publish(at, TypeConsole, arg)
		case "auth success":
			s.renewing.Store(false)
		case "token expiring":
			s.renew(false)
		case "token expired", "jwt error":
			// Wings repeats these for every event it withholds; one
			// renewal at a time answers them.
			if s.renewing.Load() {
				if time.Since(time.Unix(0, s.renewSince.Load())) > connectTimeout {
					return errors.New("wings did not accept the renewed token")
				}
				continue
			}
			if reauths == maxReauths {
				return fmt.Errorf("wings keeps refusing renewed tokens: %s", arg)
			}
			reauths++
			s.renew(true)
		case "deleted":
			return errDeleted
		}
	}
}

// renew fetches a fresh token and sends auth with it on this connection,
// in the background so that events keep flowing. After a refusal (hard) a
// failed renewal cuts the connection so that the upstream reconnects.
func (s *session) renew(hard bool) {
	if !s.renewing.CompareAndSwap(false, true) {
		return
	}
	s.renewSince.Store(time.Now().UnixNano())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, connectTimeout)
		defer cancel()
		token, _, err := s.u.creds(ctx)
		if err == nil {
			s.mu.Lock()
			s.token = token
			s.mu.Unlock()
			err = s.write("auth", token)
		}
		if err == nil {
			return
		}
		err = s.redact(fmt.Errorf("renewing the token: %w", err))
		if hard {
			s.abort(err)
			return
		}
		// Wings says "token expired" later; that renewal may go better.
		s.u.h.cfg.Log.Warn("game console token renewal failed", "key", s.u.key, "err", err)
		s.renewing.Store(false)
	}()
}

// keepalive pings a quiet connection and cuts one that stopped answering,
// which a half-open TCP connection would never report.
func (s *session) keepalive() {
	defer s.wg.Done()
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, s.seen.Load())) > deadAfter {
				s.abort(errors.New("wings stopped answering"))
				return
			}
			if err := s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				s.abort(s.redact(fmt.Errorf("pinging wings: %w", err)))
				return
			}
		}
	}
}

// write sends one event; a failed write closes the connection, so that
// the reader ends it and the upstream reconnects.
func (s *session) write(event string, args ...string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := s.ws.WriteJSON(message{Event: event, Args: args}); err != nil {
		s.ws.Close()
		return s.redact(fmt.Errorf("writing to wings: %w", err))
	}
	return nil
}

// abort cuts the connection for err, which the reader then reports.
func (s *session) abort(err error) {
	s.mu.Lock()
	if s.abortErr == nil {
		s.abortErr = err
	}
	s.mu.Unlock()
	s.ws.Close()
}

// failure is why reading failed: our own abort, the server's deletion or
// the read error, redacted.
func (s *session) failure(err error) error {
	s.mu.Lock()
	aborted := s.abortErr
	s.mu.Unlock()
	if aborted != nil {
		return aborted
	}
	// Wings closes its sockets so when the server is deleted.
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code == websocket.CloseGoingAway && ce.Text == "server deleted" {
		return errDeleted
	}
	return s.redact(fmt.Errorf("reading from wings: %w", err))
}

// redact returns err's text without the token or the socket URL: errors
// and logs leave the process, they must not.
func (s *session) redact(err error) error {
	s.mu.Lock()
	secrets := append([]string{s.token}, s.hidden...)
	s.mu.Unlock()
	msg := err.Error()
	for _, x := range secrets {
		if x != "" {
			msg = strings.ReplaceAll(msg, x, "[redacted]")
		}
	}
	return errors.New(msg)
}
