package wings_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/wings"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const (
	panelURL = "https://panel.example.test"
	appKey   = "ptla_test0000000000000000000000000000000000000"
	// aliceKey is the client key of alice, who owns demo servers 1
	// (running) and 2 (offline).
	aliceKey = "ptlc_alice000000000000000000000000000000000000"
	// waitFor bounds every wait: generous, for a busy 2-core machine
	// under -race.
	waitFor = 10 * time.Second
)

// wings is the simulated panel and Wings node, served over real HTTP.
type wingsSim struct {
	*sim.Server
	url    string
	client *http.Client
	lis    *connListener
}

// newWings serves a simulator with the demo servers, printing a console
// line every 20ms.
func newWings(t testing.TB, opts ...func(*sim.Config)) *wingsSim {
	t.Helper()
	cfg := sim.Config{
		PanelURL: panelURL, ApplicationKeys: []string{appKey}, ClientKeys: map[string]int{aliceKey: 2},
		TaskDuration: 30 * time.Millisecond, StatsInterval: 100 * time.Millisecond,
		ConsoleInterval: 20 * time.Millisecond, Seed: 1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := sim.New(cfg)
	for _, g := range sim.DemoServers() {
		if _, err := s.AddServer(g); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewUnstartedServer(s)
	lis := &connListener{Listener: ts.Listener}
	ts.Listener = lis
	ts.Start()
	t.Cleanup(func() { s.Close(); ts.Close() })
	return &wingsSim{Server: s, url: ts.URL, client: ts.Client(), lis: lis}
}

// connListener remembers the connections it accepted, so that a test can
// cut them from Wings' side.
type connListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// dropAll closes every connection accepted so far, as a Wings restart
// would.
func (l *connListener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// identifier is the short id of a demo server, the key hub tests use.
func (w *wingsSim) identifier(t testing.TB, id int) string {
	t.Helper()
	g, ok := w.Server.Server(id)
	if !ok {
		t.Fatalf("no server %d", id)
	}
	return g.Identifier
}

// credentials fetches a server's websocket token and URL from the panel's
// client API as the caller of the hub does.
func (w *wingsSim) credentials(ctx context.Context, identifier string) (token, socket string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url+"/api/client/servers/"+identifier+"/websocket", nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	req.Header.Set("Accept", "application/json")
	res, err := w.client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("panel answered %s", res.Status)
	}
	var body struct {
		Data struct{ Token, Socket string } `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", "", err
	}
	return body.Data.Token, body.Data.Socket, nil
}

// creds counts the fetches of a server's credentials.
type creds struct {
	w     *wingsSim
	id    string
	calls atomic.Int64
}

func (w *wingsSim) creds(t testing.TB, id int) *creds { return &creds{w: w, id: w.identifier(t, id)} }

func (c *creds) fetch(ctx context.Context) (string, string, error) {
	c.calls.Add(1)
	return c.w.credentials(ctx, c.id)
}

// counts is an Observer that counts.
type counts struct {
	opened, closed, joined, left, relayed, slow, reconnected atomic.Int64
}

func (c *counts) UpstreamOpened()    { c.opened.Add(1) }
func (c *counts) UpstreamClosed()    { c.closed.Add(1) }
func (c *counts) ViewerJoined()      { c.joined.Add(1) }
func (c *counts) ViewerLeft()        { c.left.Add(1) }
func (c *counts) Relayed(n int)      { c.relayed.Add(int64(n)) }
func (c *counts) SlowViewerDropped() { c.slow.Add(1) }
func (c *counts) Reconnected()       { c.reconnected.Add(1) }

// newHub returns a hub for w with fast backoff and idle close, closed at
// the end of the test.
func newHub(t testing.TB, opts ...func(*wings.Config)) (*wings.Hub, *counts) {
	t.Helper()
	obs := &counts{}
	cfg := wings.Config{
		Origin: panelURL, IdleClose: time.Minute, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler), Observer: obs,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h := wings.NewHub(cfg)
	t.Cleanup(h.Close)
	return h, obs
}

// recorder reads a viewer's events in the background.
type recorder struct {
	v    *wings.Viewer
	done chan struct{} // closed once Events is

	mu  sync.Mutex
	evs []wings.Event
	got []time.Time // when each event was read
}

func record(v *wings.Viewer) *recorder {
	r := &recorder{v: v, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range v.Events() {
			now := time.Now()
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.got = append(r.got, now)
			r.mu.Unlock()
		}
	}()
	return r
}

func watch(t testing.TB, h *wings.Hub, key string, c wings.Credentials) *recorder {
	t.Helper()
	v, err := h.Watch(context.Background(), key, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return record(v)
}

func (r *recorder) events() []wings.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wings.Event(nil), r.evs...)
}

// index is the position of the first event from from on that matches,
// or -1.
func (r *recorder) index(from int, match func(wings.Event) bool) int {
	evs := r.events()
	for i := from; i < len(evs); i++ {
		if match(evs[i]) {
			return i
		}
	}
	return -1
}

// await waits for an event from position from on that matches and
// returns its position.
func (r *recorder) await(t testing.TB, what string, from int, match func(wings.Event) bool) int {
	t.Helper()
	i := -1
	adaptertest.Eventually(t, what, func() bool { i = r.index(from, match); return i >= 0 })
	return i
}

// closed waits for Events to close.
func (r *recorder) closed(t testing.TB) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(waitFor):
		t.Fatal("Events did not close")
	}
}

func is(typ, data string) func(wings.Event) bool {
	return func(ev wings.Event) bool { return ev.Type == typ && ev.Data == data }
}

func isConsole(ev wings.Event) bool { return ev.Type == wings.TypeConsole }

// checkSeqsIncrease fails unless the events' Seqs strictly increase, and
// from position from on without gaps.
func checkSeqsIncrease(t testing.TB, evs []wings.Event, from int) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		switch {
		case evs[i].Seq <= evs[i-1].Seq:
			t.Fatalf("event %d has Seq %d after %d", i, evs[i].Seq, evs[i-1].Seq)
		case i > from && evs[i].Seq != evs[i-1].Seq+1:
			t.Fatalf("events %d and %d: Seq jumps from %d to %d", i-1, i, evs[i-1].Seq, evs[i].Seq)
		}
	}
}

func TestFiftyViewersShareOneUpstreamAndSeeTheSameEvents(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t)
	c := w.creds(t, 1)
	key := c.id
	var recs []*recorder
	for range 50 {
		recs = append(recs, watch(t, h, key, c.fetch))
	}
	if err := h.Send(context.Background(), key, c.fetch, "send command", "say marker"); err != nil {
		t.Fatal(err)
	}
	const n = 30
	var want []wings.Event
	for i, r := range recs {
		m := r.await(t, "the marker", 0, is(wings.TypeConsole, "> say marker"))
		adaptertest.Eventually(t, "events after the marker", func() bool { return len(r.events()) >= m+n })
		got := r.events()[m : m+n]
		checkSeqsIncrease(t, got, 0)
		if i == 0 {
			want = got
			continue
		}
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("viewer %d event %d is %+v, viewer 0 got %+v", i, j, got[j], want[j])
			}
		}
	}
	if n := w.CountCalls("ws.connect", key); n != 1 {
		t.Errorf("%d websocket connections to Wings, want 1", n)
	}
	if o := obs.opened.Load(); o != 1 {
		t.Errorf("UpstreamOpened %d times, want 1", o)
	}
}

func TestConnectAuthenticatesAndReplaysWingsRecentLines(t *testing.T) {
	w := newWings(t)
	h, _ := newHub(t)
	c := w.creds(t, 1)
	// Printed before the hub connects: only "send logs" brings it.
	res, err := w.client.Do(commandRequest(t, w, c.id, "say before"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	r := watch(t, h, c.id, c.fetch)
	conn := r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	r.await(t, "the line printed before connecting", conn, is(wings.TypeConsole, "> say before"))
	r.await(t, "the running status", conn, is(wings.TypeStatus, "running"))
	checkSeqsIncrease(t, r.events(), 0)
}

// commandRequest is the panel's client API call that types a command on
// the server's console.
func commandRequest(t testing.TB, w *wingsSim, identifier, cmd string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, w.url+"/api/client/servers/"+identifier+"/command",
		strings.NewReader(fmt.Sprintf(`{"command":%q}`, cmd)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	return req
}

func TestNewViewerGetsTheRecentLinesFirst(t *testing.T) {
	w := newWings(t)
	h, _ := newHub(t, func(c *wings.Config) { c.Replay = 5 })
	c := w.creds(t, 1)
	first := watch(t, h, c.id, c.fetch)
	conn := first.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	adaptertest.Eventually(t, "console lines", func() bool { return len(first.events()) > conn+20 })
	joined := time.Now()
	second := watch(t, h, c.id, c.fetch)
	adaptertest.Eventually(t, "the replay and a live line", func() bool {
		evs := second.events()
		return len(evs) > 0 && evs[len(evs)-1].At.After(joined)
	})
	evs := second.events()
	checkSeqsIncrease(t, evs, len(evs))
	var replayed []wings.Event
	for _, ev := range evs {
		if ev.At.Before(joined) && isConsole(ev) {
			replayed = append(replayed, ev)
		}
	}
	if len(replayed) != 5 {
		t.Fatalf("replayed %d console lines, want 5: %+v", len(replayed), evs)
	}
	if !evs[0].At.Before(joined) {
		t.Errorf("first event %+v is live, want the replay first", evs[0])
	}
	byFirst := map[uint64]wings.Event{}
	for _, ev := range first.events() {
		byFirst[ev.Seq] = ev
	}
	for _, ev := range replayed {
		if byFirst[ev.Seq] != ev {
			t.Errorf("replayed %+v, the first viewer got %+v", ev, byFirst[ev.Seq])
		}
	}
}

// checkNoReconnect fails if the viewer saw the upstream drop or Wings saw
// a second connection.
func checkNoReconnect(t *testing.T, w *wingsSim, r *recorder, key string) {
	t.Helper()
	if i := r.index(0, is(wings.TypeConnection, wings.Reconnecting)); i >= 0 {
		t.Errorf("viewer saw reconnecting at event %d", i)
	}
	if n := w.CountCalls("ws.connect", key); n != 1 {
		t.Errorf("%d websocket connections to Wings, want 1", n)
	}
}

func TestTokenExpiringIsRenewedOnTheSameConnection(t *testing.T) {
	// A 61-second token is "expiring" (60 s or less left) within a second.
	w := newWings(t, func(c *sim.Config) {
		c.TokenLifetime, c.TokenCheckInterval = 61*time.Second, 20*time.Millisecond
	})
	h, _ := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	conn := r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	adaptertest.Eventually(t, "two renewals", func() bool { return c.calls.Load() >= 3 })
	n := len(r.events())
	adaptertest.Eventually(t, "lines after the renewals", func() bool { return len(r.events()) > n+10 })
	checkNoReconnect(t, w, r, c.id)
	checkSeqsIncrease(t, r.events(), conn)
}

func TestTokenExpiredIsRenewedOnTheSameConnection(t *testing.T) {
	w := newWings(t, func(c *sim.Config) { c.TokenCheckInterval = 20 * time.Millisecond })
	h, _ := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	w.AdvanceClock(11 * time.Minute) // past the token's 10 minutes, skipping "expiring"
	adaptertest.Eventually(t, "a renewal", func() bool { return c.calls.Load() >= 2 })
	n := len(r.events())
	r.await(t, "lines after the renewal", n, isConsole)
	checkNoReconnect(t, w, r, c.id)
}

func TestJWTErrorIsAnsweredWithAFreshToken(t *testing.T) {
	w := newWings(t)
	h, _ := newHub(t)
	c := w.creds(t, 1)
	other := w.identifier(t, 2)
	var calls atomic.Int64
	// The first token is for another server: Wings accepts it, then
	// answers each event with "jwt error: server uuid mismatch".
	mixed := func(ctx context.Context) (string, string, error) {
		token, socket, err := c.fetch(ctx)
		if calls.Add(1) == 1 && err == nil {
			token, _, err = w.credentials(ctx, other)
		}
		return token, socket, err
	}
	r := watch(t, h, c.id, mixed)
	conn := r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	r.await(t, "console lines with the fresh token", conn, isConsole)
	if n := calls.Load(); n != 2 {
		t.Errorf("credentials fetched %d times, want 2", n)
	}
	checkNoReconnect(t, w, r, c.id)
}

func TestFailedRenewalReconnects(t *testing.T) {
	w := newWings(t, func(c *sim.Config) { c.TokenCheckInterval = 20 * time.Millisecond })
	h, obs := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	w.Inject(simkit.Fault{Op: "client.websocket", Times: 1, Status: http.StatusInternalServerError})
	w.AdvanceClock(11 * time.Minute)
	drop := r.await(t, "reconnecting", 0, is(wings.TypeConnection, wings.Reconnecting))
	back := r.await(t, "connected again", drop, is(wings.TypeConnection, wings.Connected))
	r.await(t, "lines after reconnecting", back, isConsole)
	if n := w.CountCalls("ws.connect", c.id); n != 2 {
		t.Errorf("%d websocket connections to Wings, want 2", n)
	}
	if n := obs.reconnected.Load(); n != 1 {
		t.Errorf("Reconnected %d times, want 1", n)
	}
}

func TestDroppedUpstreamReconnectsWithBackoff(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	// Wings goes away and refuses the first two attempts.
	w.Inject(simkit.Fault{Op: "ws.connect", Times: 2, Status: http.StatusBadGateway})
	w.lis.dropAll()
	drop := r.await(t, "reconnecting", 0, is(wings.TypeConnection, wings.Reconnecting))
	back := r.await(t, "connected again", drop, is(wings.TypeConnection, wings.Connected))
	r.await(t, "lines after reconnecting", back, isConsole)
	if n := w.CountCalls("ws.connect", c.id); n != 4 {
		t.Errorf("%d websocket connections to Wings, want 4 (1, 2 refused, 1)", n)
	}
	if n := obs.reconnected.Load(); n != 1 {
		t.Errorf("Reconnected %d times, want 1", n)
	}
	checkSeqsIncrease(t, r.events(), 0)
}

func TestUpstreamIsLostAfterRepeatedFailures(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	w.Inject(simkit.Fault{Op: "client.websocket", Status: http.StatusInternalServerError})
	w.lis.dropAll()
	drop := r.await(t, "reconnecting", 0, is(wings.TypeConnection, wings.Reconnecting))
	r.await(t, "lost", drop, is(wings.TypeConnection, wings.Lost))
	r.closed(t)
	if err := r.v.Err(); !errors.Is(err, wings.ErrLost) || !strings.Contains(err.Error(), "500") {
		t.Errorf("Err() = %v, want ErrLost with the panel's answer", err)
	}
	adaptertest.Eventually(t, "the upstream to close", func() bool { return obs.closed.Load() == 1 })

	w.ClearFaults()
	again := watch(t, h, c.id, c.fetch)
	again.await(t, "a new upstream connected", 0, is(wings.TypeConnection, wings.Connected))
}

func TestDeletedServerIsLostWithoutRetrying(t *testing.T) {
	w := newWings(t)
	h, _ := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	req, err := http.NewRequest(http.MethodDelete, w.url+"/api/application/servers/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+appKey)
	req.Header.Set("Accept", "application/json")
	res, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	r.closed(t)
	if err := r.v.Err(); !errors.Is(err, wings.ErrLost) {
		t.Errorf("Err() = %v, want ErrLost", err)
	}
	if r.index(0, is(wings.TypeConnection, wings.Reconnecting)) >= 0 {
		t.Error("viewer saw reconnecting for a deleted server")
	}
	if n := c.calls.Load(); n != 1 {
		t.Errorf("credentials fetched %d times, want 1", n)
	}
}

func TestSlowViewerIsDroppedAlone(t *testing.T) {
	w := newWings(t, func(c *sim.Config) { c.ConsoleInterval = 5 * time.Millisecond })
	h, obs := newHub(t, func(c *wings.Config) { c.ViewerBuffer, c.Replay = 8, -1 })
	c := w.creds(t, 1)
	slow, err := h.Watch(context.Background(), c.id, c.fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	var fast []*recorder
	for range 3 {
		fast = append(fast, watch(t, h, c.id, c.fetch))
	}
	for _, r := range fast {
		adaptertest.Eventually(t, "100 events", func() bool { return len(r.events()) >= 100 })
	}
	if err := slow.Err(); !errors.Is(err, wings.ErrSlowViewer) {
		t.Fatalf("slow viewer's Err() = %v, want ErrSlowViewer", err)
	}
	if n := len(slow.Events()); n > 8 {
		t.Errorf("slow viewer holds %d events, want at most its buffer of 8", n)
	}
	if n := obs.slow.Load(); n != 1 {
		t.Errorf("SlowViewerDropped %d times, want 1", n)
	}
	for i, r := range fast {
		if err := r.v.Err(); err != nil {
			t.Errorf("fast viewer %d dropped: %v", i, err)
		}
		r.mu.Lock()
		evs, got := r.evs, r.got
		r.mu.Unlock()
		// Without lines to replay, a late joiner's backlog is at most the
		// connection, status and stats events.
		checkSeqsIncrease(t, evs, 3)
		for j, ev := range evs {
			if lag := got[j].Sub(ev.At); lag > time.Second {
				t.Errorf("fast viewer %d got event %d %v after the hub", i, j, lag)
			}
		}
	}
}

func TestUpstreamClosesWhenIdleAndReopens(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t, func(c *wings.Config) { c.IdleClose = 50 * time.Millisecond })
	c := w.creds(t, 1)
	v, err := h.Watch(context.Background(), c.id, c.fetch)
	if err != nil {
		t.Fatal(err)
	}
	r := record(v)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	v.Close()
	r.closed(t)
	if err := v.Err(); !errors.Is(err, wings.ErrClosed) {
		t.Errorf("Err() after Close = %v, want ErrClosed", err)
	}
	adaptertest.Eventually(t, "the idle upstream to close", func() bool { return obs.closed.Load() == 1 })

	again := watch(t, h, c.id, c.fetch)
	again.await(t, "connected again", 0, is(wings.TypeConnection, wings.Connected))
	if n := w.CountCalls("ws.connect", c.id); n != 2 {
		t.Errorf("%d websocket connections to Wings, want 2", n)
	}
}

func TestViewerReturningWithinIdleCloseKeepsTheUpstream(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t, func(c *wings.Config) { c.IdleClose = time.Minute })
	c := w.creds(t, 1)
	v, err := h.Watch(context.Background(), c.id, c.fetch)
	if err != nil {
		t.Fatal(err)
	}
	record(v).await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	v.Close()
	again := watch(t, h, c.id, c.fetch)
	// The replay tells the newcomer the upstream is connected.
	again.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	again.await(t, "live lines", 0, isConsole)
	if n := obs.opened.Load(); n != 1 {
		t.Errorf("UpstreamOpened %d times, want 1", n)
	}
}

func TestViewerLeavesWhenItsContextEnds(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t)
	c := w.creds(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	v, err := h.Watch(ctx, c.id, c.fetch)
	if err != nil {
		t.Fatal(err)
	}
	r := record(v)
	cancel()
	r.closed(t)
	if err := v.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err() = %v, want context.Canceled", err)
	}
	if n := obs.left.Load(); n != 1 {
		t.Errorf("ViewerLeft %d times, want 1", n)
	}
}

func TestSendCommandIsEchoedOnTheConsole(t *testing.T) {
	w := newWings(t)
	h, _ := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.Send(ctx, c.id, c.fetch, "send command", "say hi"); err != nil {
		t.Fatal(err)
	}
	r.await(t, "the echoed command", 0, is(wings.TypeConsole, "> say hi"))
}

func TestSendSetStateStartsTheServer(t *testing.T) {
	w := newWings(t)
	h, _ := newHub(t)
	c := w.creds(t, 2) // offline
	r := watch(t, h, c.id, c.fetch)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.Send(ctx, c.id, c.fetch, "set state", "start"); err != nil {
		t.Fatal(err)
	}
	r.await(t, "running", 0, is(wings.TypeStatus, "running"))
	if g, _ := w.Server.Server(2); g.State != sim.StateRunning {
		t.Errorf("server is %s, want running", g.State)
	}
}

func TestSendWithoutViewersOpensTheUpstreamUntilIdle(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t, func(c *wings.Config) { c.IdleClose = 50 * time.Millisecond })
	c := w.creds(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.Send(ctx, c.id, c.fetch, "set state", "start"); err != nil {
		t.Fatal(err)
	}
	adaptertest.Eventually(t, "the server to run", func() bool { g, _ := w.Server.Server(2); return g.State == sim.StateRunning })
	adaptertest.Eventually(t, "the idle upstream to close", func() bool { return obs.closed.Load() == 1 })
}

func TestSendRefusesOtherEvents(t *testing.T) {
	tests := []struct {
		name  string
		event string
		args  []string
	}{
		{"auth", "auth", []string{"token"}},
		{"send logs would replay to everyone", "send logs", nil},
		{"unknown power signal", "set state", []string{"explode"}},
		{"command without text", "send command", nil},
		{"two commands", "send command", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, obs := newHub(t)
			never := func(context.Context) (string, string, error) { return "", "", errors.New("not called") }
			if err := h.Send(context.Background(), "k", never, tt.event, tt.args...); err == nil {
				t.Error("Send succeeded")
			}
			if n := obs.opened.Load(); n != 0 {
				t.Errorf("opened %d upstreams", n)
			}
		})
	}
}

func TestSendGivesUpWithItsContext(t *testing.T) {
	w := newWings(t)
	// Slow backoff, so that the upstream is still trying, not lost.
	h, _ := newHub(t, func(c *wings.Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Second })
	c := w.creds(t, 1)
	w.Inject(simkit.Fault{Op: "ws.connect", Status: http.StatusBadGateway})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := h.Send(ctx, c.id, c.fetch, "send command", "say hi")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "502") {
		t.Errorf("Send = %v, want the deadline and the last failure", err)
	}
}

func TestCloseEndsViewersAndRefusesMore(t *testing.T) {
	w := newWings(t)
	h, obs := newHub(t)
	c := w.creds(t, 1)
	r := watch(t, h, c.id, c.fetch)
	r.await(t, "connected", 0, is(wings.TypeConnection, wings.Connected))
	h.Close()
	r.closed(t)
	if err := r.v.Err(); !errors.Is(err, wings.ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", err)
	}
	if n := obs.closed.Load(); n != 1 {
		t.Errorf("UpstreamClosed %d times, want 1", n)
	}
	if _, err := h.Watch(context.Background(), c.id, c.fetch); !errors.Is(err, wings.ErrClosed) {
		t.Errorf("Watch after Close = %v, want ErrClosed", err)
	}
	if err := h.Send(context.Background(), c.id, c.fetch, "send stats"); !errors.Is(err, wings.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestErrorsAndLogsNeverShowTheTokenOrSocketURL(t *testing.T) {
	tests := []struct {
		name    string
		origin  string
		fault   *simkit.Fault
		refused bool   // the socket URL points at a closed port
		want    string // in Err() and the logs
	}{
		{name: "connection refused", origin: panelURL, refused: true, want: "connection refused"},
		{name: "wings refuses the upgrade", origin: panelURL, want: "502",
			fault: &simkit.Fault{Op: "ws.connect", Status: http.StatusBadGateway}},
		{name: "foreign origin", origin: "https://evil.example", want: "403"},
		{name: "dropped after the upgrade", origin: panelURL, want: "wings:",
			fault: &simkit.Fault{Op: "ws.connect", Drop: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWings(t)
			if tt.fault != nil {
				w.Inject(*tt.fault)
			}
			var logs bytes.Buffer
			var mu sync.Mutex
			h, _ := newHub(t, func(c *wings.Config) {
				c.Origin = tt.origin
				c.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			c := w.creds(t, 1)
			closed := ""
			if tt.refused {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				l.Close()
				closed = l.Addr().String()
			}
			var secrets []string
			var smu sync.Mutex
			fetch := func(ctx context.Context) (string, string, error) {
				token, socket, err := c.fetch(ctx)
				u, _ := url.Parse(socket)
				if closed != "" {
					u.Host = closed
					socket = u.String()
				}
				smu.Lock()
				secrets = append(secrets, token, socket, u.Host, u.Path)
				smu.Unlock()
				return token, socket, err
			}
			r := watch(t, h, c.id, fetch)
			r.closed(t)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			sendErr := h.Send(ctx, c.id, fetch, "send command", "say hi")
			err := r.v.Err()
			if !errors.Is(err, wings.ErrLost) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Err() = %v, want ErrLost saying %q", err, tt.want)
			}
			h.Close()
			mu.Lock()
			text := logs.String()
			mu.Unlock()
			if !strings.Contains(text, tt.want) {
				t.Errorf("logs do not say %q:\n%s", tt.want, text)
			}
			smu.Lock()
			defer smu.Unlock()
			for _, s := range secrets {
				if s == "" {
					continue // a failed fetch
				}
				for where, got := range map[string]string{"Err()": err.Error(), "Send": fmt.Sprint(sendErr), "logs": text} {
					if strings.Contains(got, s) {
						t.Errorf("%s shows %q: %s", where, s, got)
					}
				}
			}
		})
	}
}

// lockedWriter serializes a log buffer's writers and the test's reads.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
