// Package wings carries each game server's Wings console to many
// viewers through one upstream websocket per server, so that the Wings
// socket URL and its JWT never leave this process.
//
// The hub speaks Wings' websocket protocol: it authenticates with "auth",
// asks for the recent lines with "send logs" once Wings answers "auth
// success", renews the token on "token expiring" without reconnecting,
// fetches a fresh one on "token expired" or "jwt error" and reconnects with
// jittered backoff when the connection drops.
package wings

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Errors a viewer's Err or Send report.
var (
	// ErrSlowViewer: the viewer fell ViewerBuffer events behind and was
	// dropped so that it could not hold up the others.
	ErrSlowViewer = errors.New("wings: viewer too slow, dropped")
	// ErrClosed: the viewer or the hub was closed.
	ErrClosed = errors.New("wings: closed")
	// ErrLost: the upstream could not be (re)established after repeated
	// attempts, or Wings deleted the server; the error wraps the last cause.
	ErrLost = errors.New("wings: console connection lost")
)

// Credentials fetches fresh websocket credentials (from the panel's client
// API /websocket).
type Credentials func(ctx context.Context) (token, socketURL string, err error)

// Event is what viewers receive.
type Event struct {
	Seq  uint64    // per server, increasing
	Type string    // "console", "status", "stats", "install", "connection"
	Data string    // the line, the state, the stats JSON, or for "connection": "connected"/"reconnecting"/"lost"
	At   time.Time // when the hub received it from Wings
}

// Event types.
const (
	// TypeConsole is a console line: Wings' "console output", and its
	// "daemon message" and "daemon error" lines, which the panel prints in
	// the terminal too.
	TypeConsole = "console"
	// TypeStatus is the power state: offline, starting, running, stopping.
	TypeStatus = "status"
	// TypeStats is Wings' stats JSON.
	TypeStats = "stats"
	// TypeInstall is an "install output" line, or the markers "install
	// started" and "install completed".
	TypeInstall = "install"
	// TypeConnection is the upstream's state: one of the Connection values.
	TypeConnection = "connection"
)

// Data of TypeConnection events.
const (
	// Connected: the upstream authenticated; Wings' replay of the server's
	// recent lines follows, so a terminal clears on it as the panel's does.
	Connected = "connected"
	// Reconnecting: the upstream dropped and is being re-established.
	Reconnecting = "reconnecting"
	// Lost: the hub gave up; the viewer's Events closes next with ErrLost.
	Lost = "lost"
)

// Config configures a Hub; zero fields take the defaults.
type Config struct {
	Origin                 string            // the panel URL Wings expects in the Origin header
	IdleClose              time.Duration     // close an upstream this long after its last viewer left; default 30s
	ViewerBuffer           int               // events a viewer may lag behind before it is dropped; default 256
	Replay                 int               // recent console lines kept per server and replayed to a new viewer; default 100, negative for none
	BackoffMin, BackoffMax time.Duration     // reconnect backoff (full jitter); defaults 500ms, 30s
	Dialer                 *websocket.Dialer // default websocket.DefaultDialer
	Log                    *slog.Logger      // default slog.Default()
	Observer               Observer          // may be nil
}

// Observer receives the hub's metrics (Prometheus is wired by the caller).
// Its methods are called from the hub's goroutines, some under its locks,
// so they must be quick.
type Observer interface {
	UpstreamOpened()    // an upstream for a key started
	UpstreamClosed()    // it ended: idle, lost or hub closed
	ViewerJoined()      // Watch added a viewer
	ViewerLeft()        // a viewer left, for whatever reason
	Relayed(n int)      // one event went to n viewers
	SlowViewerDropped() // a viewer was dropped for lagging (ViewerLeft follows)
	Reconnected()       // an upstream authenticated again after a drop
}

// nopObserver stands in for a nil Config.Observer.
type nopObserver struct{}

func (nopObserver) UpstreamOpened()    {}
func (nopObserver) UpstreamClosed()    {}
func (nopObserver) ViewerJoined()      {}
func (nopObserver) ViewerLeft()        {}
func (nopObserver) Relayed(int)        {}
func (nopObserver) SlowViewerDropped() {}
func (nopObserver) Reconnected()       {}

// Hub multiplexes Wings consoles: one upstream per key, any number of
// viewers. Its methods are safe for concurrent use.
type Hub struct {
	cfg Config
	wg  sync.WaitGroup // upstream goroutines

	mu     sync.Mutex
	closed bool
	ups    map[string]*upstream
}

// NewHub returns a Hub for cfg.
func NewHub(cfg Config) *Hub {
	if cfg.IdleClose <= 0 {
		cfg.IdleClose = 30 * time.Second
	}
	if cfg.ViewerBuffer <= 0 {
		cfg.ViewerBuffer = 256
	}
	if cfg.Replay == 0 {
		cfg.Replay = 100
	}
	cfg.Replay = max(cfg.Replay, 0)
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if cfg.Dialer == nil {
		cfg.Dialer = websocket.DefaultDialer
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &Hub{cfg: cfg, ups: map[string]*upstream{}}
}

// Watch adds a viewer of server key (e.g. the service id), opening the
// upstream with creds if none is open; an open upstream keeps the
// credentials it was opened with. It does not wait for the connection: the
// viewer first gets the recent lines and the last connection, status and
// stats events, then live events. The viewer leaves when ctx ends or on
// Close.
func (h *Hub) Watch(ctx context.Context, key string, creds Credentials) (*Viewer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	u, err := h.upstreamLocked(key, creds)
	if err != nil {
		h.mu.Unlock()
		return nil, err
	}
	v := u.join()
	h.mu.Unlock()
	h.cfg.Observer.ViewerJoined()
	v.stop = context.AfterFunc(ctx, func() { u.leave(v, context.Cause(ctx)) })
	return v, nil
}

// powerSignals are the arguments of "set state".
var powerSignals = []string{"start", "stop", "restart", "kill"}

// Send sends an event on the server's upstream ("send command" with the
// command, "set state" with start|stop|restart|kill, "send stats"),
// opening it if needed; it waits for auth success (bounded by ctx). A nil
// error means Wings got the event; what it makes of it reaches the viewers.
func (h *Hub) Send(ctx context.Context, key string, creds Credentials, event string, args ...string) error {
	switch {
	case event == "send command" && len(args) == 1 && args[0] != "":
	case event == "set state" && len(args) == 1 && slices.Contains(powerSignals, args[0]):
	case event == "send stats" && len(args) == 0:
	default:
		return fmt.Errorf("wings: cannot send %q with %d args", event, len(args))
	}
	h.mu.Lock()
	u, err := h.upstreamLocked(key, creds)
	if err == nil {
		u.acquire()
	}
	h.mu.Unlock()
	if err != nil {
		return err
	}
	defer u.release()
	return u.send(ctx, event, args)
}

// Close ends every upstream and closes every viewer's Events with
// ErrClosed, and waits for the hub's goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	ups := h.ups
	h.ups = map[string]*upstream{}
	h.mu.Unlock()
	for _, u := range ups {
		u.end(ErrClosed)
	}
	h.wg.Wait()
}

// upstreamLocked returns the key's upstream, starting one if none is open;
// h.mu must be held.
func (h *Hub) upstreamLocked(key string, creds Credentials) (*upstream, error) {
	if h.closed {
		return nil, ErrClosed
	}
	if u := h.ups[key]; u != nil {
		return u, nil
	}
	u := newUpstream(h, key, creds)
	h.ups[key] = u
	h.wg.Add(1)
	go u.run()
	h.cfg.Observer.UpstreamOpened()
	return u, nil
}

// forget removes u from the map if it is still the key's upstream, and
// reports whether it was; cond, when set, must also hold (it runs under
// u.mu).
func (h *Hub) forget(u *upstream, cond func() bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ups[u.key] != u {
		return false
	}
	if cond != nil {
		u.mu.Lock()
		ok := cond()
		u.mu.Unlock()
		if !ok {
			return false
		}
	}
	delete(h.ups, u.key)
	return true
}

// Viewer is one consumer of a server's events.
type Viewer struct {
	u    *upstream
	ch   chan Event
	stop func() bool // releases the Watch context's hook

	// Guarded by u.mu.
	idx int   // position in u.viewers
	err error // why ch was closed; nil while open
}

// Events delivers the server's events in Seq order; it is closed when the
// viewer is dropped (slow) or closed, the upstream is lost or the hub
// closes.
func (v *Viewer) Events() <-chan Event { return v.ch }

// Err says why Events closed: ErrSlowViewer, ErrClosed, an error wrapping
// ErrLost, or the cause of the Watch context's end; nil while it is open.
func (v *Viewer) Err() error {
	v.u.mu.Lock()
	defer v.u.mu.Unlock()
	return v.err
}

// Close leaves; Events closes with ErrClosed unless it was closed already.
func (v *Viewer) Close() {
	v.stop()
	v.u.leave(v, ErrClosed)
}
