package wings

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hostfleet/provisiond/internal/backoff"
)

// Limits of an upstream's connection.
const (
	// connectTimeout bounds fetching credentials, dialing and waiting for
	// auth success, and a token renewal.
	connectTimeout = 15 * time.Second
	// writeTimeout bounds one frame to Wings.
	writeTimeout = 5 * time.Second
	// pingInterval is how often a quiet connection is pinged; one that has
	// sent nothing, not even a pong, for deadAfter is given up.
	pingInterval = 30 * time.Second
	deadAfter    = 75 * time.Second
	// maxAttempts consecutive failed connection attempts lose the upstream:
	// about a minute of trying with the default backoff.
	maxAttempts = 10
	// maxReauths is how many times a connection renews its token after
	// "token expired" or "jwt error" without a valid event in between
	// before it reconnects instead.
	maxReauths = 2
)

// errIdle ends an upstream nobody uses; no viewer or Send sees it.
var errIdle = errors.New("wings: upstream idle")

// upstream is the one Wings connection of a key and its viewers.
type upstream struct {
	h      *Hub
	key    string
	creds  Credentials
	ctx    context.Context // ends the upstream
	cancel context.CancelFunc

	mu      sync.Mutex
	err     error // why the upstream ended; nil while it runs
	viewers []*Viewer
	sending int // Sends in flight, which keep the upstream open
	idle    *time.Timer
	idleGen uint64 // tells a stale idle timer from the current one
	seq     uint64
	// lines is a ring of the last Replay console and install events, the
	// oldest at head.
	lines []Event
	head  int
	// conn, status and stats are the latest of their type (Seq 0: none),
	// replayed to a new viewer.
	conn, status, stats Event
	live                *session      // authenticated connection, nil while there is none
	changed             chan struct{} // closed and replaced when live changes
	lastErr             error         // why the last attempt failed, redacted
}

// newUpstream returns an upstream for key that run will connect.
func newUpstream(h *Hub, key string, creds Credentials) *upstream {
	ctx, cancel := context.WithCancel(context.Background())
	return &upstream{h: h, key: key, creds: creds, ctx: ctx, cancel: cancel,
		lines: make([]Event, 0, h.cfg.Replay), changed: make(chan struct{})}
}

// run connects, reads and reconnects until the upstream ends or is lost.
func (u *upstream) run() {
	defer u.h.wg.Done()
	defer u.h.cfg.Observer.UpstreamClosed()
	log := u.h.cfg.Log.With("key", u.key)
	failures, reconnect := 0, false
	for {
		connected, err := u.connect(reconnect)
		if u.ctx.Err() != nil {
			return
		}
		u.mu.Lock()
		u.lastErr = err
		u.mu.Unlock()
		deleted := errors.Is(err, errDeleted)
		switch {
		case connected && !deleted:
			reconnect, failures = true, 0
			log.Info("game console upstream dropped", "err", err)
			u.publish(time.Now(), TypeConnection, Reconnecting)
		case !connected:
			failures++
			log.Warn("game console upstream failed", "attempt", failures, "err", err)
		}
		if deleted || failures >= maxAttempts {
			log.Warn("game console upstream lost", "err", err)
			u.publish(time.Now(), TypeConnection, Lost)
			if u.h.forget(u, nil) {
				u.end(fmt.Errorf("%w: %v", ErrLost, err))
			}
			return
		}
		if !u.sleep(u.backoff(failures)) {
			return
		}
	}
}

// backoff is the full-jitter delay before the next attempt after
// failures consecutive failed ones: many viewers' upstreams to one Wings
// node come back spread out.
func (u *upstream) backoff(failures int) time.Duration {
	return backoff.Policy{Base: u.h.cfg.BackoffMin, Max: u.h.cfg.BackoffMax}.Full(failures)
}

// sleep waits d; false if the upstream ended first.
func (u *upstream) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-u.ctx.Done():
		return false
	}
}

// online makes s the authenticated connection and tells the viewers.
func (u *upstream) online(s *session, reconnect bool) {
	u.mu.Lock()
	u.live = s
	// Wings replays its recent lines after "send logs"; they replace ours.
	u.lines, u.head = u.lines[:0], 0
	u.signalLocked()
	u.mu.Unlock()
	u.publish(time.Now(), TypeConnection, Connected)
	if reconnect {
		u.h.cfg.Observer.Reconnected()
	}
}

// offline forgets the authenticated connection.
func (u *upstream) offline() {
	u.mu.Lock()
	if u.live != nil {
		u.live = nil
		u.signalLocked()
	}
	u.mu.Unlock()
}

// signalLocked wakes the Sends waiting for a connection; u.mu must be held.
func (u *upstream) signalLocked() {
	close(u.changed)
	u.changed = make(chan struct{})
}

// publish numbers an event, keeps what a new viewer is replayed and hands
// it to every viewer without blocking: a viewer whose buffer is full is
// dropped. Only the run goroutine publishes, so events keep Wings' order.
func (u *upstream) publish(at time.Time, typ, data string) {
	obs := u.h.cfg.Observer
	u.mu.Lock()
	u.seq++
	ev := Event{Seq: u.seq, Type: typ, Data: data, At: at}
	u.rememberLocked(ev)
	n, dropped := 0, 0
	// Backwards, so that dropping (which moves the last viewer into the
	// hole) never skips one.
	for i := len(u.viewers) - 1; i >= 0; i-- {
		v := u.viewers[i]
		select {
		case v.ch <- ev:
			n++
		default:
			u.removeLocked(v, ErrSlowViewer)
			dropped++
		}
	}
	u.mu.Unlock()
	obs.Relayed(n)
	for range dropped {
		obs.SlowViewerDropped()
		obs.ViewerLeft()
	}
}

// rememberLocked keeps ev for viewers still to come; u.mu must be held.
func (u *upstream) rememberLocked(ev Event) {
	switch ev.Type {
	case TypeConsole, TypeInstall:
		if cap(u.lines) == 0 {
			return
		}
		if len(u.lines) < cap(u.lines) {
			u.lines = append(u.lines, ev)
			return
		}
		u.lines[u.head] = ev
		u.head = (u.head + 1) % len(u.lines)
	case TypeConnection:
		u.conn = ev
	case TypeStatus:
		u.status = ev
	case TypeStats:
		u.stats = ev
	}
}

// join adds a viewer, its buffer primed with the replay; the caller holds
// h.mu, so the upstream is not ending.
func (u *upstream) join() *Viewer {
	u.mu.Lock()
	defer u.mu.Unlock()
	backlog := make([]Event, 0, len(u.lines)+3)
	backlog = append(backlog, u.lines[u.head:]...)
	backlog = append(backlog, u.lines[:u.head]...)
	for _, ev := range []Event{u.conn, u.status, u.stats} {
		if ev.Seq != 0 {
			backlog = append(backlog, ev)
		}
	}
	slices.SortFunc(backlog, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	v := &Viewer{u: u, ch: make(chan Event, u.h.cfg.ViewerBuffer+len(backlog)), idx: len(u.viewers)}
	for _, ev := range backlog {
		v.ch <- ev
	}
	u.viewers = append(u.viewers, v)
	u.stopIdleLocked()
	return v
}

// leave removes a viewer, closing its Events with err, unless it is gone
// already.
func (u *upstream) leave(v *Viewer, err error) {
	u.mu.Lock()
	left := u.removeLocked(v, err)
	u.mu.Unlock()
	if left {
		u.h.cfg.Observer.ViewerLeft()
	}
}

// removeLocked closes v's Events with err and takes it out; the last one
// out starts the idle timer. u.mu must be held.
func (u *upstream) removeLocked(v *Viewer, err error) bool {
	if v.err != nil {
		return false
	}
	v.err = err
	close(v.ch)
	last := len(u.viewers) - 1
	moved := u.viewers[last]
	u.viewers[v.idx], moved.idx = moved, v.idx
	u.viewers[last] = nil
	u.viewers = u.viewers[:last]
	u.armIdleLocked()
	return true
}

// acquire holds the upstream open for a Send; the caller holds h.mu.
func (u *upstream) acquire() {
	u.mu.Lock()
	u.sending++
	u.stopIdleLocked()
	u.mu.Unlock()
}

// release ends what acquire began.
func (u *upstream) release() {
	u.mu.Lock()
	u.sending--
	u.armIdleLocked()
	u.mu.Unlock()
}

// armIdleLocked starts the idle timer if nobody uses the upstream;
// u.mu must be held.
func (u *upstream) armIdleLocked() {
	if len(u.viewers) > 0 || u.sending > 0 || u.err != nil {
		return
	}
	u.stopIdleLocked()
	gen := u.idleGen
	u.idle = time.AfterFunc(u.h.cfg.IdleClose, func() {
		idle := func() bool { return gen == u.idleGen && len(u.viewers) == 0 && u.sending == 0 }
		if u.h.forget(u, idle) {
			u.end(errIdle)
		}
	})
}

// stopIdleLocked stops the idle timer; u.mu must be held.
func (u *upstream) stopIdleLocked() {
	u.idleGen++
	if u.idle != nil {
		u.idle.Stop()
		u.idle = nil
	}
}

// end stops the upstream and closes its viewers' Events with err. The
// caller has taken it out of the hub's map.
func (u *upstream) end(err error) {
	u.mu.Lock()
	if u.err != nil {
		u.mu.Unlock()
		return
	}
	u.err = err
	u.stopIdleLocked()
	viewers := u.viewers
	u.viewers = nil
	for _, v := range viewers {
		v.err = err
		close(v.ch)
	}
	u.mu.Unlock()
	u.cancel()
	for range viewers {
		u.h.cfg.Observer.ViewerLeft()
	}
}

// send writes one event once a connection is authenticated, waiting for
// the next one if the current connection breaks under it.
func (u *upstream) send(ctx context.Context, event string, args []string) error {
	for {
		u.mu.Lock()
		live, changed, ended := u.live, u.changed, u.err
		u.mu.Unlock()
		if ended != nil {
			return ended
		}
		if live != nil && live.write(event, args...) == nil {
			return nil
		}
		select {
		case <-changed:
		case <-u.ctx.Done():
		case <-ctx.Done():
			u.mu.Lock()
			lastErr := u.lastErr
			u.mu.Unlock()
			if lastErr != nil {
				return fmt.Errorf("wings: no console connection: %w (last attempt: %v)", ctx.Err(), lastErr)
			}
			return fmt.Errorf("wings: no console connection: %w", ctx.Err())
		}
	}
}
