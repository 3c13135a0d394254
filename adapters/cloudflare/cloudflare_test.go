package cloudflare_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/cloudflare"
	"github.com/hostfleet/provisiond/adapters/cloudflare/sim"
	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const token = "cf-test-token-0123456789abcdefghijklmnopqrstuv"

// account is a simulator with one zone, example.test, behind a client.
type account struct {
	sim  *sim.Server
	url  string
	zone string
	c    *cloudflare.Client
	obs  *observer
}

func newAccount(t *testing.T, opts ...func(*sim.Config)) *account {
	t.Helper()
	cfg := sim.Config{Tokens: map[string][]string{token: {sim.AllZones}}, Seed: 1}
	for _, o := range opts {
		o(&cfg)
	}
	s := sim.New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	a := &account{sim: s, url: ts.URL + "/client/v4", zone: s.AddZone("example.test"), obs: &observer{}}
	a.c = a.client(t, nil)
	return a
}

// client returns a client of the account, changed by mod.
func (a *account) client(t *testing.T, mod func(*cloudflare.Config)) *cloudflare.Client {
	t.Helper()
	cfg := cloudflare.Config{BaseURL: a.url, APIToken: token, RequestTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := cloudflare.New(cfg, a.obs)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// observer keeps the calls observed.
type observer struct {
	mu   sync.Mutex
	ops  []string
	errs []error
}

func (o *observer) ObserveProviderCall(provider, op string, err error, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ops = append(o.ops, provider+" "+op)
	o.errs = append(o.errs, err)
}

func (o *observer) count(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, got := range o.ops {
		if got == cloudflare.Provider+" "+op {
			n++
		}
	}
	return n
}

// failureOf returns err as a *failure.Error, failing the test otherwise,
// and checks that the token appears nowhere in it.
func failureOf(t *testing.T, err error) *failure.Error {
	t.Helper()
	fe := adaptertest.FailureOf(t, err, cloudflare.Provider)
	noToken(t, err)
	return fe
}

// noToken fails the test when err's text, or that of anything it wraps,
// shows the token.
func noToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(text, token) {
			t.Errorf("error text shows the token: %s", text)
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		noToken(t, u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			noToken(t, e)
		}
	}
}

func TestZones(t *testing.T) {
	ctx := context.Background()
	a := newAccount(t)
	other := a.sim.AddZone("customer.test")
	all, err := a.c.Zones(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "example.test" || all[1].ID != other ||
		all[0].Status != "active" || len(all[0].NameServers) != 2 {
		t.Fatalf("Zones = %+v, %v", all, err)
	}
	tests := []struct {
		name, want string
	}{
		{"example.test", a.zone},
		{"Customer.Test.", other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, err := a.c.ZoneByName(ctx, tt.name)
			if err != nil || z.ID != tt.want {
				t.Errorf("ZoneByName = %+v, %v; want %s", z, err, tt.want)
			}
		})
	}
	if _, err := a.c.ZoneByName(ctx, "missing.test"); !errors.Is(err, cloudflare.ErrNotFound) || !errors.Is(err, failure.ErrNotFound) {
		t.Errorf("ZoneByName(missing) = %v, want ErrNotFound", err)
	}
}

func TestZonesReadsEveryPage(t *testing.T) {
	a := newAccount(t)
	for i := range 54 {
		a.sim.AddZone(fmt.Sprintf("z%02d.test", i))
	}
	all, err := a.c.Zones(context.Background())
	if err != nil || len(all) != 55 {
		t.Fatalf("Zones = %d zones, %v; want 55", len(all), err)
	}
	if n := a.sim.CountCalls("zones.list", ""); n != 2 {
		t.Errorf("%d zone listings, want 2 pages", n)
	}
}

func TestRecordLifecycle(t *testing.T) {
	tests := []struct {
		name           string
		create, update cloudflare.NewRecord
		filter         cloudflare.RecordFilter
		// want is the record after update, without its id and times.
		want cloudflare.NewRecord
	}{
		{name: "A",
			create: cloudflare.NewRecord{Type: "A", Name: "www", Content: "192.0.2.1", TTL: 300, Comment: "web"},
			update: cloudflare.NewRecord{Type: "A", Name: "www", Content: "203.0.113.5", Proxied: true},
			filter: cloudflare.RecordFilter{Type: "A", Name: "www.example.test"},
			want:   cloudflare.NewRecord{Type: "A", Name: "www.example.test", Content: "203.0.113.5", TTL: 1, Proxied: true}},
		{name: "AAAA",
			create: cloudflare.NewRecord{Type: "AAAA", Name: "www", Content: "2001:db8::1"},
			update: cloudflare.NewRecord{Type: "AAAA", Name: "www", Content: "2001:DB8::2", TTL: 600, Comment: "v6"},
			filter: cloudflare.RecordFilter{Type: "AAAA"},
			want:   cloudflare.NewRecord{Type: "AAAA", Name: "www.example.test", Content: "2001:db8::2", TTL: 600, Comment: "v6"}},
		{name: "CNAME",
			create: cloudflare.NewRecord{Type: "CNAME", Name: "panel.example.test", Content: "www.example.test", Proxied: true},
			update: cloudflare.NewRecord{Type: "CNAME", Name: "panel.example.test", Content: "node.example.test"},
			filter: cloudflare.RecordFilter{Name: "panel.example.test"},
			want:   cloudflare.NewRecord{Type: "CNAME", Name: "panel.example.test", Content: "node.example.test", TTL: 1}},
		{name: "TXT",
			create: cloudflare.NewRecord{Type: "TXT", Name: "@", Content: "v=spf1 -all", TTL: 3600},
			update: cloudflare.NewRecord{Type: "TXT", Name: "@", Content: "v=spf1 mx -all", TTL: 3600},
			filter: cloudflare.RecordFilter{Type: "TXT", Name: "example.test"},
			want:   cloudflare.NewRecord{Type: "TXT", Name: "example.test", Content: "v=spf1 mx -all", TTL: 3600}},
		{name: "MX",
			create: cloudflare.NewRecord{Type: "MX", Name: "@", Content: "mail.example.test", Priority: 10},
			update: cloudflare.NewRecord{Type: "MX", Name: "@", Content: "mx2.example.test", Priority: 20, TTL: 300},
			filter: cloudflare.RecordFilter{Type: "MX"},
			want:   cloudflare.NewRecord{Type: "MX", Name: "example.test", Content: "mx2.example.test", Priority: 20, TTL: 300}},
		{name: "SRV",
			create: cloudflare.NewRecord{Type: "SRV", Name: "_minecraft._tcp.mc",
				SRV: &cloudflare.SRV{Priority: 0, Weight: 5, Port: 25565, Target: "node.example.test"}},
			update: cloudflare.NewRecord{Type: "SRV", Name: "_minecraft._tcp.mc", Comment: "moved",
				SRV: &cloudflare.SRV{Priority: 10, Weight: 60, Port: 25566, Target: "node2.example.test"}},
			filter: cloudflare.RecordFilter{Type: "SRV", Name: "_minecraft._tcp.mc.example.test"},
			want: cloudflare.NewRecord{Type: "SRV", Name: "_minecraft._tcp.mc.example.test", Content: "10 60 25566 node2.example.test",
				TTL: 1, Comment: "moved", SRV: &cloudflare.SRV{Priority: 10, Weight: 60, Port: 25566, Target: "node2.example.test"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a := newAccount(t)
			// A record of another type and name, which the filter leaves out.
			if _, err := a.sim.AddRecord(a.zone, sim.Record{Type: "TXT", Name: "other", Content: "x"}); err != nil {
				t.Fatal(err)
			}
			created, err := a.c.CreateRecord(ctx, a.zone, tt.create)
			if err != nil || len(created.ID) != 32 || created.CreatedOn.IsZero() {
				t.Fatalf("CreateRecord = %+v, %v", created, err)
			}
			if kept, ok := a.sim.Record(a.zone, created.ID); !ok || kept.Type != tt.create.Type || kept.Comment != tt.create.Comment {
				t.Errorf("simulator keeps %+v, %v", kept, ok)
			}
			found, err := a.c.Records(ctx, a.zone, tt.filter)
			if err != nil || len(found) != 1 || found[0].ID != created.ID {
				t.Fatalf("Records(%+v) = %+v, %v; want the created one only", tt.filter, found, err)
			}
			updated, err := a.c.UpdateRecord(ctx, a.zone, created.ID, tt.update)
			if err != nil {
				t.Fatal(err)
			}
			for what, got := range map[string]cloudflare.Record{"UpdateRecord": updated, "Records": a.only(t, tt.filter)} {
				if got.ID != created.ID || !same(got.NewRecord, tt.want) {
					t.Errorf("%s = %+v (SRV %+v), want %+v (SRV %+v)", what, got.NewRecord, got.SRV, tt.want, tt.want.SRV)
				}
			}
			if err := a.c.DeleteRecord(ctx, a.zone, created.ID); err != nil {
				t.Fatal(err)
			}
			if left, err := a.c.Records(ctx, a.zone, tt.filter); err != nil || len(left) != 0 {
				t.Errorf("Records after delete = %+v, %v; want none", left, err)
			}
			err = a.c.DeleteRecord(ctx, a.zone, created.ID)
			if fe := failureOf(t, err); !errors.Is(err, cloudflare.ErrNotFound) || fe.Class != failure.Permanent || fe.Status != 404 {
				t.Errorf("second DeleteRecord = %v, want a permanent ErrNotFound", err)
			}
		})
	}
}

// only returns the one record filter selects.
func (a *account) only(t *testing.T, filter cloudflare.RecordFilter) cloudflare.Record {
	t.Helper()
	found, err := a.c.Records(context.Background(), a.zone, filter)
	if err != nil || len(found) != 1 {
		t.Fatalf("Records(%+v) = %+v, %v; want one", filter, found, err)
	}
	return found[0]
}

func same(a, b cloudflare.NewRecord) bool {
	srvA, srvB := a.SRV, b.SRV
	a.SRV, b.SRV = nil, nil
	return a == b && (srvA == nil) == (srvB == nil) && (srvA == nil || *srvA == *srvB)
}

func TestRecordsReadsEveryPage(t *testing.T) {
	a := newAccount(t)
	for i := range 230 {
		if _, err := a.sim.AddRecord(a.zone, sim.Record{Type: "TXT", Name: "bulk", Content: fmt.Sprintf("v%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.sim.AddRecord(a.zone, sim.Record{Type: "A", Name: "www", Content: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter cloudflare.RecordFilter
		want   int
		pages  int
	}{
		{"all", cloudflare.RecordFilter{}, 231, 3},
		{"by type", cloudflare.RecordFilter{Type: "TXT"}, 230, 3},
		{"by name", cloudflare.RecordFilter{Name: "www.example.test"}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.sim.ResetCalls()
			found, err := a.c.Records(context.Background(), a.zone, tt.filter)
			if err != nil || len(found) != tt.want {
				t.Fatalf("Records = %d records, %v; want %d", len(found), err, tt.want)
			}
			ids := map[string]bool{}
			for _, r := range found {
				ids[r.ID] = true
			}
			if len(ids) != tt.want {
				t.Errorf("%d distinct records, want %d", len(ids), tt.want)
			}
			if n := a.sim.CountCalls("records.list", ""); n != tt.pages {
				t.Errorf("%d listings, want %d pages", n, tt.pages)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	missing := strings.Repeat("ab", 16)
	valid := cloudflare.NewRecord{Type: "A", Name: "www", Content: "192.0.2.1"}
	tests := []struct {
		name  string
		fault *simkit.Fault
		call  func(a *account) error
		// ops is how many calls reached the simulator.
		ops        int
		class      failure.Class
		status     int
		retryAfter time.Duration
		notFound   bool
		message    string
	}{
		{name: "missing record", call: func(a *account) error { return a.c.DeleteRecord(context.Background(), a.zone, missing) },
			ops: 1, class: failure.Permanent, status: 404, notFound: true, message: "Record does not exist."},
		{name: "missing record on update", call: func(a *account) error {
			_, err := a.c.UpdateRecord(context.Background(), a.zone, missing, valid)
			return err
		}, ops: 1, class: failure.Permanent, status: 404, notFound: true, message: "Record does not exist."},
		{name: "invalid content", call: func(a *account) error {
			_, err := a.c.CreateRecord(context.Background(), a.zone, cloudflare.NewRecord{Type: "A", Name: "www", Content: "not-an-ip"})
			return err
		}, ops: 1, class: failure.Permanent, status: 400, message: "Content for A record must be a valid IPv4 address."},
		{name: "validation error in a chain", call: func(a *account) error {
			_, err := a.c.CreateRecord(context.Background(), a.zone, cloudflare.NewRecord{Type: "TXT", Name: "www", Content: "x", TTL: 5})
			return err
		}, ops: 1, class: failure.Permanent, status: 400, message: "TTL must be between 60 and 86400 seconds, or 1 for Automatic."},
		{name: "unsupported type", call: func(a *account) error {
			_, err := a.c.CreateRecord(context.Background(), a.zone, cloudflare.NewRecord{Type: "NS", Name: "www", Content: "ns.example.test"})
			return err
		}, ops: 0, class: failure.Permanent, message: `record type "NS" is not supported (A, AAAA, CNAME, TXT, MX, SRV are)`},
		{name: "SRV without data", call: func(a *account) error {
			_, err := a.c.CreateRecord(context.Background(), a.zone, cloudflare.NewRecord{Type: "SRV", Name: "_sip._udp"})
			return err
		}, ops: 0, class: failure.Permanent, message: "an SRV record needs its priority, weight, port and target"},
		{name: "throttled", fault: &simkit.Fault{Op: "records.create", Status: 429, RetryAfter: 7 * time.Second},
			call: func(a *account) error { _, err := a.c.CreateRecord(context.Background(), a.zone, valid); return err },
			ops:  1, class: failure.Transient, status: 429, retryAfter: 7 * time.Second,
			message: "Please wait and consider throttling your request speed"},
		{name: "server error", fault: &simkit.Fault{Op: "records.list", Status: 500},
			call: func(a *account) error {
				_, err := a.c.Records(context.Background(), a.zone, cloudflare.RecordFilter{})
				return err
			},
			ops: 1, class: failure.Transient, status: 500, message: "Internal Server Error"},
		{name: "unavailable with a code", fault: &simkit.Fault{Op: "records.delete", Status: 503, Message: "10013: Service unavailable"},
			call: func(a *account) error { return a.c.DeleteRecord(context.Background(), a.zone, missing) },
			ops:  1, class: failure.Transient, status: 503, message: "Service unavailable"},
		{name: "token echoed back", fault: &simkit.Fault{Op: "zones.list", Status: 403, Message: "9109: Invalid access token " + token},
			call: func(a *account) error { _, err := a.c.Zones(context.Background()); return err },
			ops:  1, class: failure.Permanent, status: 403, message: "Invalid access token [redacted]"},
		{name: "dropped answer", fault: &simkit.Fault{Op: "records.create", Drop: true},
			call: func(a *account) error { _, err := a.c.CreateRecord(context.Background(), a.zone, valid); return err },
			ops:  1, class: failure.Transient, message: "unreadable answer from Cloudflare"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAccount(t)
			if tt.fault != nil {
				a.sim.Inject(*tt.fault)
			}
			err := tt.call(a)
			fe := failureOf(t, err)
			if fe.Class != tt.class || fe.Status != tt.status || fe.RetryAfter != tt.retryAfter || fe.Message != tt.message {
				t.Errorf("got %v %d retry after %v %q, want %v %d retry after %v %q",
					fe.Class, fe.Status, fe.RetryAfter, fe.Message, tt.class, tt.status, tt.retryAfter, tt.message)
			}
			if errors.Is(err, failure.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v, want %v", !tt.notFound, tt.notFound)
			}
			// The SDK retries nothing: each failure is one request.
			adaptertest.Eventually(t, "the calls to finish", func() bool {
				calls := a.sim.Calls()
				return len(calls) == tt.ops && !slices.ContainsFunc(calls, func(c simkit.Call) bool { return c.Status == 0 })
			})
		})
	}
}

func TestDroppedCreateHappened(t *testing.T) {
	a := newAccount(t)
	a.sim.Inject(simkit.Fault{Op: "records.create", Times: 1, Drop: true})
	_, err := a.c.CreateRecord(context.Background(), a.zone, cloudflare.NewRecord{Type: "A", Name: "www", Content: "192.0.2.1"})
	if fe := failureOf(t, err); fe.Class != failure.Transient {
		t.Fatalf("dropped create: %v, want transient", err)
	}
	// The caller cannot know; a look at the zone tells.
	found, err := a.c.Records(context.Background(), a.zone, cloudflare.RecordFilter{Name: "www.example.test"})
	if err != nil || len(found) != 1 {
		t.Errorf("Records = %+v, %v; want the record created", found, err)
	}
}

func TestHungCallTimesOut(t *testing.T) {
	a := newAccount(t)
	a.sim.Inject(simkit.Fault{Op: "zones.list", Hang: true})
	c := a.client(t, func(cfg *cloudflare.Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	_, err := c.Zones(context.Background())
	if fe := failureOf(t, err); fe.Class != failure.Transient || fe.Message != "Cloudflare did not answer in time" {
		t.Errorf("hung call: %v, want a transient timeout", err)
	}
}

func TestUnreachableIsTransient(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	c, err := cloudflare.New(cloudflare.Config{BaseURL: url + "/client/v4", APIToken: token}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Zones(context.Background())
	if fe := failureOf(t, err); fe.Class != failure.Transient || fe.Message != "the connection to Cloudflare failed" {
		t.Errorf("unreachable: %v, want a transient connection failure", err)
	}
}

func TestCancelledContextIsNotAFailure(t *testing.T) {
	a := newAccount(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.c.Zones(ctx)
	var fe *failure.Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &fe) {
		t.Errorf("cancelled: %v, want context.Canceled as it is", err)
	}
}

func TestRateLimitIsTransientWithRetryAfter(t *testing.T) {
	a := newAccount(t, func(cfg *sim.Config) { cfg.RatePerWindow, cfg.Window = 2, time.Hour })
	ctx := context.Background()
	for range 2 {
		if _, err := a.c.Zones(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, err := a.c.Zones(ctx)
	fe := failureOf(t, err)
	if fe.Class != failure.Transient || fe.Status != 429 || fe.RetryAfter < 59*time.Minute || fe.RetryAfter > time.Hour {
		t.Errorf("over the limit: %v, retry after %v; want transient 429 in about an hour", err, fe.RetryAfter)
	}
}

// headerRecorder keeps the headers of the requests it carries.
type headerRecorder struct {
	mu      sync.Mutex
	headers []http.Header
}

func (h *headerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.headers = append(h.headers, r.Header.Clone())
	h.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func TestOnlyTheConfiguredTokenAuthenticates(t *testing.T) {
	t.Setenv("CLOUDFLARE_API_KEY", "env-key")
	t.Setenv("CLOUDFLARE_EMAIL", "env@example.test")
	t.Setenv("CLOUDFLARE_API_TOKEN", "env-token-0123456789abcdefghijklmnopqrstuvwxyz")
	a := newAccount(t)
	rec := &headerRecorder{}
	c := a.client(t, func(cfg *cloudflare.Config) { cfg.Transport = rec })
	if _, err := c.Zones(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.headers) != 1 {
		t.Fatalf("%d requests, want 1", len(rec.headers))
	}
	h := rec.headers[0]
	if h.Get("Authorization") != "Bearer "+token || h.Get("X-Auth-Key") != "" || h.Get("X-Auth-Email") != "" {
		t.Errorf("headers %v, want only the configured token", h)
	}
}

func TestObserverSeesEveryCall(t *testing.T) {
	a := newAccount(t)
	ctx := context.Background()
	a.sim.Inject(simkit.Fault{Op: "records.delete", Times: 1, Status: 500})
	if _, err := a.c.Zones(ctx); err != nil {
		t.Fatal(err)
	}
	_ = a.c.DeleteRecord(ctx, a.zone, strings.Repeat("cd", 16))
	if a.obs.count("zones.list") != 1 || a.obs.count("records.delete") != 1 {
		t.Errorf("observed %v", a.obs.ops)
	}
	a.obs.mu.Lock()
	defer a.obs.mu.Unlock()
	var fe *failure.Error
	if a.obs.errs[0] != nil || !errors.As(a.obs.errs[1], &fe) || fe.Class != failure.Transient || fe.Status != 500 {
		t.Errorf("observed errors %v", a.obs.errs)
	}
}

func TestNewNeedsAToken(t *testing.T) {
	tests := []struct {
		name string
		cfg  cloudflare.Config
	}{
		{"no token", cloudflare.Config{BaseURL: "http://localhost/client/v4"}},
		{"bad URL", cloudflare.Config{BaseURL: "ftp://x", APIToken: token}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cloudflare.New(tt.cfg, nil)
			if err == nil {
				t.Fatal("New succeeded")
			}
			noToken(t, err)
		})
	}
}
