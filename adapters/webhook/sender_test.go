package webhook_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/webhook"
)

// sentAt is the fake clock's time: deliveries are signed and stamped with it.
var sentAt = time.Date(2025, 1, 2, 15, 4, 7, 0, time.UTC)

var signingKey = []byte("whsec_test")

// request is what a test server received.
type request struct {
	header http.Header
	query  string
	body   []byte
}

// recorder is an httptest TLS server that keeps the requests it receives
// and answers with answer (204 when nil).
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newRecorder(t *testing.T, answer http.HandlerFunc) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, request{r.Header.Clone(), r.URL.RawQuery, body})
		rec.mu.Unlock()
		if answer == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		answer(w, r)
	}))
	// Refused and aborted connections are what several tests are about.
	rec.Config.ErrorLog = log.New(io.Discard, "", 0)
	rec.StartTLS()
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) requests() []request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]request(nil), rec.reqs...)
}

// only returns the one request the server must have received.
func (rec *recorder) only(t *testing.T) request {
	t.Helper()
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("server received %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// newSender returns a Sender that trusts srv's certificate and may reach the
// given networks.
func newSender(srv *httptest.Server, allowed ...string) *webhook.Sender {
	roots := x509.NewCertPool()
	if srv != nil {
		roots.AddCert(srv.Certificate())
	}
	return webhook.NewSender(webhook.SenderConfig{
		Guard:   &webhook.Guard{Allowed: prefixes(allowed...), Resolver: offlineResolver()},
		Timeout: 5 * time.Second,
		RootCAs: roots,
		Now:     func() time.Time { return sentAt },
	})
}

func firing() webhook.Event {
	return webhook.Event{
		ID:              "fa_1:firing",
		Kind:            "firing",
		AlertID:         "fa_1",
		RuleID:          "rule_1",
		ServiceID:       "svc_1",
		ServiceName:     "web-1",
		Profile:         "Team A",
		MetricType:      "cpu",
		Operator:        "gt",
		Threshold:       90,
		Unit:            "%",
		Value:           97.5,
		Severity:        "critical",
		DurationMinutes: 5,
		FiredAt:         time.Date(2025, 1, 2, 15, 0, 0, 0, time.UTC),
	}
}

func resolved() webhook.Event {
	e := firing()
	e.ID, e.Kind, e.Value = "fa_1:resolved", "resolved", 41.25
	at := time.Date(2025, 1, 2, 15, 12, 0, 0, time.UTC)
	e.ResolvedAt = &at
	return e
}

func TestGenericDeliverySendsDocumentedBodyAndHeaders(t *testing.T) {
	tests := []struct {
		name  string
		event webhook.Event
		want  string
	}{
		{"firing", firing(), `{"id":"fa_1:firing","event":"firing",
			"alert":{"id":"fa_1","ruleId":"rule_1","metricType":"cpu","operator":"gt","threshold":90,"unit":"%",
				"value":97.5,"severity":"critical","durationMinutes":5,"firedAt":"2025-01-02T15:00:00Z","resolvedAt":null},
			"service":{"id":"svc_1","name":"web-1"},"profile":"Team A","sentAt":"2025-01-02T15:04:07Z"}`},
		{"resolved", resolved(), `{"id":"fa_1:resolved","event":"resolved",
			"alert":{"id":"fa_1","ruleId":"rule_1","metricType":"cpu","operator":"gt","threshold":90,"unit":"%",
				"value":41.25,"severity":"critical","durationMinutes":5,"firedAt":"2025-01-02T15:00:00Z","resolvedAt":"2025-01-02T15:12:00Z"},
			"service":{"id":"svc_1","name":"web-1"},"profile":"Team A","sentAt":"2025-01-02T15:04:07Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, nil)
			if err := newSender(srv.Server, "127.0.0.0/8").Generic(context.Background(), srv.URL+"/hooks/abc?x=1", signingKey, tt.event); err != nil {
				t.Fatalf("Generic: %v", err)
			}
			req := srv.only(t)
			var got, want any
			if err := json.Unmarshal(req.body, &got); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, req.body)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("body\n got %s\nwant %s", req.body, tt.want)
			}
			for name, want := range map[string]string{
				"Content-Type":          "application/json",
				"User-Agent":            "provisiond-alerts/1",
				"X-Provisiond-Event":    tt.event.Kind,
				"X-Provisiond-Delivery": tt.event.ID,
			} {
				if got := req.header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if req.query != "x=1" {
				t.Errorf("query = %q, want the URL's own x=1", req.query)
			}
			sig := req.header.Get("X-Provisiond-Signature")
			if err := webhook.Verify(signingKey, sig, req.body, sentAt.Add(time.Minute), 5*time.Minute); err != nil {
				t.Errorf("Verify refuses the delivery's signature %q: %v", sig, err)
			}
			if err := webhook.Verify([]byte("other key"), sig, req.body, sentAt, 5*time.Minute); err == nil {
				t.Error("Verify accepts the delivery's signature with the wrong key")
			}
		})
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"fa_1:firing"}`)
	good := webhook.Sign(signingKey, sentAt, body)
	tests := []struct {
		name   string
		key    []byte
		header string
		body   []byte
		now    time.Time
		ok     bool
	}{
		{"accepts a fresh signature", signingKey, good, body, sentAt.Add(4 * time.Minute), true},
		{"accepts a clock slightly behind", signingKey, good, body, sentAt.Add(-time.Minute), true},
		{"accepts one matching v1 of several", signingKey, good + ",v1=00ff", body, sentAt, true},
		{"refuses a tampered body", signingKey, good, []byte(`{"id":"fa_2:firing"}`), sentAt, false},
		{"refuses a wrong key", []byte("whsec_other"), good, body, sentAt, false},
		{"refuses an old timestamp", signingKey, good, body, sentAt.Add(6 * time.Minute), false},
		{"refuses a timestamp far ahead", signingKey, good, body, sentAt.Add(-6 * time.Minute), false},
		{"refuses a signature moved to another time", signingKey, "t=1," + strings.SplitN(good, ",", 2)[1], body, time.Unix(1, 0), false},
		{"refuses a header without v1", signingKey, strings.SplitN(good, ",", 2)[0], body, sentAt, false},
		{"refuses a header without t", signingKey, strings.SplitN(good, ",", 2)[1], body, sentAt, false},
		{"refuses an empty header", signingKey, "", body, sentAt, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.key, tt.header, tt.body, tt.now, 5*time.Minute)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify(%q) = %v, want ok %v", tt.header, err, tt.ok)
			}
		})
	}
	if !strings.HasPrefix(good, "t=1735830247,v1=") || len(good) != len("t=1735830247,v1=")+64 {
		t.Errorf("Sign = %q, want t=<unix seconds>,v1=<64 hex digits>", good)
	}
}

// discordMessage is the part of Discord's execute-webhook body we send.
type discordMessage struct {
	Username string `json:"username"`
	Embeds   []struct {
		Title       string `json:"title"`
		Description string `json:"description"`
		Color       int    `json:"color"`
		Fields      []struct {
			Name   string `json:"name"`
			Value  string `json:"value"`
			Inline bool   `json:"inline"`
		} `json:"fields"`
		Timestamp string `json:"timestamp"`
		Footer    struct {
			Text string `json:"text"`
		} `json:"footer"`
	} `json:"embeds"`
	AllowedMentions struct {
		Parse *[]string `json:"parse"`
	} `json:"allowed_mentions"`
}

func TestDiscordDeliverySendsEmbed(t *testing.T) {
	warning := firing()
	warning.Severity, warning.Profile = "warning", ""
	offline := firing()
	offline.MetricType, offline.Operator, offline.Threshold, offline.Unit, offline.Value = "offline", "", 0, "", 0
	offline.Profile = "Discord fans" // Discord refuses webhook names containing "discord"
	back := resolved()
	back.MetricType, back.Unit = "offline", ""
	long := firing()
	long.ServiceName = strings.Repeat("x", 5000)

	tests := []struct {
		name     string
		event    webhook.Event
		username string
		title    string
		color    int
		fields   string // name=value, joined with "; "
		stamp    string
	}{
		{"firing critical", firing(), "Team A", "🔴 CPU above 90 % on web-1", 0xE74C3C,
			"Metric=cpu; Value=97.5 %; Threshold=> 90 % for 5 min; Severity=critical", "2025-01-02T15:00:00Z"},
		{"firing warning without profile", warning, "Provisiond alerts", "🟠 CPU above 90 % on web-1", 0xE67E22,
			"Metric=cpu; Value=97.5 %; Threshold=> 90 % for 5 min; Severity=warning", "2025-01-02T15:00:00Z"},
		{"resolved", resolved(), "Team A", "✅ Resolved: CPU on web-1", 0x2ECC71,
			"Metric=cpu; Value=41.25 %; Threshold=> 90 % for 5 min; Severity=critical", "2025-01-02T15:12:00Z"},
		{"offline", offline, "Provisiond alerts", "🔴 Server offline: web-1", 0xE74C3C,
			"Metric=offline; Threshold=offline for 5 min; Severity=critical", "2025-01-02T15:00:00Z"},
		{"back online", back, "Team A", "✅ Back online: web-1", 0x2ECC71,
			"Metric=offline; Threshold=offline for 5 min; Severity=critical", "2025-01-02T15:12:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRecorder(t, nil)
			if err := newSender(srv.Server, "127.0.0.0/8").Discord(context.Background(), srv.URL+"/api/webhooks/1/tok?wait=false", tt.event); err != nil {
				t.Fatalf("Discord: %v", err)
			}
			req := srv.only(t)
			if req.query != "wait=false" {
				t.Errorf("query = %q, want wait=false as given", req.query)
			}
			var msg discordMessage
			if err := json.Unmarshal(req.body, &msg); err != nil || len(msg.Embeds) != 1 {
				t.Fatalf("body %s: %v, want one embed", req.body, err)
			}
			em := msg.Embeds[0]
			var fields []string
			for _, f := range em.Fields {
				fields = append(fields, f.Name+"="+f.Value)
				if !f.Inline {
					t.Errorf("field %s is not inline", f.Name)
				}
			}
			if msg.Username != tt.username || em.Title != tt.title || em.Color != tt.color ||
				strings.Join(fields, "; ") != tt.fields || em.Timestamp != tt.stamp || em.Footer.Text != "alert fa_1" {
				t.Errorf("got username %q, title %q, color %#x, fields %q, timestamp %s, footer %q\n"+
					"want username %q, title %q, color %#x, fields %q, timestamp %s, footer %q",
					msg.Username, em.Title, em.Color, strings.Join(fields, "; "), em.Timestamp, em.Footer.Text,
					tt.username, tt.title, tt.color, tt.fields, tt.stamp, "alert fa_1")
			}
			if em.Description == "" || !strings.Contains(em.Description, "web-1") {
				t.Errorf("description %q does not name the service", em.Description)
			}
			if p := msg.AllowedMentions.Parse; p == nil || len(*p) != 0 {
				t.Errorf("allowed_mentions.parse = %v, want [] so that no one is pinged", p)
			}
		})
	}

	t.Run("long names are cut to Discord's limits", func(t *testing.T) {
		srv := newRecorder(t, nil)
		if err := newSender(srv.Server, "127.0.0.0/8").Discord(context.Background(), srv.URL, long); err != nil {
			t.Fatalf("Discord: %v", err)
		}
		var msg discordMessage
		if err := json.Unmarshal(srv.only(t).body, &msg); err != nil {
			t.Fatal(err)
		}
		em := msg.Embeds[0]
		if n := len([]rune(em.Title)); n > 256 {
			t.Errorf("title has %d characters, more than 256", n)
		}
		if n := len([]rune(em.Description)); n > 4096 {
			t.Errorf("description has %d characters, more than 4096", n)
		}
	})
}

// refusedURL returns an https URL on 127.0.0.1 where nothing listens.
func refusedURL(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr + path
}

func TestDeliveryFailuresAreClassified(t *testing.T) {
	tests := []struct {
		name       string
		discord    bool
		answer     http.HandlerFunc // nil: nothing listens
		class      failure.Class
		status     int
		retryAfter time.Duration
		message    string
	}{
		{"500 is transient", false, status(500, nil, ""),
			failure.Transient, 500, 0, "the webhook answered 500 Internal Server Error"},
		{"503 with Retry-After is transient", false, status(503, http.Header{"Retry-After": {"30"}}, ""),
			failure.Transient, 503, 30 * time.Second, "the webhook answered 503 Service Unavailable"},
		{"408 is transient", false, status(408, nil, ""),
			failure.Transient, 408, 0, "the webhook answered 408 Request Timeout"},
		{"429 with Retry-After is transient", false, status(429, http.Header{"Retry-After": {"7"}}, ""),
			failure.Transient, 429, 7 * time.Second, "the webhook answered 429 Too Many Requests"},
		{"Discord 429 with retry_after in the body", true, status(429, nil, `{"message":"You are being rate limited.","retry_after":1.5,"global":false}`),
			failure.Transient, 429, 1500 * time.Millisecond, "Discord answered 429 Too Many Requests: You are being rate limited."},
		{"Discord 429 prefers the Retry-After header", true, status(429, http.Header{"Retry-After": {"3"}}, `{"retry_after":1.5}`),
			failure.Transient, 429, 3 * time.Second, "Discord answered 429 Too Many Requests"},
		{"404 is permanent", false, status(404, nil, "not here"),
			failure.Permanent, 404, 0, "the webhook answered 404 Not Found"},
		{"Discord 404 unknown webhook is permanent", true, status(404, nil, `{"message":"Unknown Webhook","code":10015}`),
			failure.Permanent, 404, 0, "Discord answered 404 Not Found: Unknown Webhook"},
		{"401 is permanent", true, status(401, nil, `{"message":"Invalid Webhook Token","code":50027}`),
			failure.Permanent, 401, 0, "Discord answered 401 Unauthorized: Invalid Webhook Token"},
		{"302 is permanent and not followed", false, status(302, http.Header{"Location": {"/followed"}}, ""),
			failure.Permanent, 302, 0, "the webhook answered a redirect"},
		{"connection refused is transient", false, nil,
			failure.Transient, 0, 0, "connection failed: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srv *recorder
			url := refusedURL(t, "/hook")
			if tt.answer != nil {
				srv = newRecorder(t, tt.answer)
				url = srv.URL + "/hook"
			}
			s := newSender(serverOf(srv), "127.0.0.0/8")
			var err error
			if tt.discord {
				err = s.Discord(context.Background(), url, firing())
			} else {
				err = s.Generic(context.Background(), url, signingKey, firing())
			}
			checkFailure(t, err, tt.discord, tt.class, tt.status, tt.retryAfter, tt.message)
			if srv != nil && len(srv.requests()) != 1 {
				t.Errorf("server received %d requests, want 1 (redirects are not followed)", len(srv.requests()))
			}
		})
	}
}

func TestDeliveryTimeoutIsTransient(t *testing.T) {
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		// Answer nothing: a 200 racing the client's cancellation could be
		// read as delivered.
		panic(http.ErrAbortHandler)
	})
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	s := webhook.NewSender(webhook.SenderConfig{
		Guard:   &webhook.Guard{Allowed: prefixes("127.0.0.0/8")},
		Timeout: 200 * time.Millisecond,
		RootCAs: roots,
	})
	err := s.Generic(context.Background(), srv.URL, signingKey, firing())
	checkFailure(t, err, false, failure.Transient, 0, 0, "connection failed: timeout")
}

func TestUntrustedCertificateIsRefused(t *testing.T) {
	srv := newRecorder(t, nil)
	err := newSender(nil, "127.0.0.0/8").Discord(context.Background(), srv.URL, firing())
	checkFailure(t, err, true, failure.Transient, 0, 0, "connection failed: the server's TLS certificate is not valid")
	if n := len(srv.requests()); n != 0 {
		t.Errorf("server received %d requests over an untrusted connection", n)
	}
}

func TestDialGuardRefusesInternalAddresses(t *testing.T) {
	srv := newRecorder(t, nil)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			// No Allowed networks: the test server's loopback address is
			// internal, and nothing but the dial guard stands in the way.
			s := newSender(srv.Server)
			url := "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/hook"
			err := s.Generic(context.Background(), url, signingKey, firing())
			checkFailure(t, err, false, failure.Permanent, 0, 0, "the webhook connects to 127.0.0.1, an internal address")
		})
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("server received %d requests, want none", n)
	}
}

func TestPlainHTTPOnlyToAllowedNetworks(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if err := newSender(nil, "127.0.0.0/8").Generic(context.Background(), srv.URL, signingKey, firing()); err != nil {
		t.Errorf("http to an allowed network: %v", err)
	}
	err := newSender(nil).Generic(context.Background(), "http://93.184.215.14/hook", signingKey, firing())
	checkFailure(t, err, false, failure.Permanent, 0, 0, "the webhook's address must be an https:// URL without credentials")
}

func TestEnvironmentProxyIsIgnored(t *testing.T) {
	// A proxy would connect on our behalf, out of the dial guard's sight.
	t.Setenv("HTTPS_PROXY", "http://192.0.2.1:3128")
	t.Setenv("HTTP_PROXY", "http://192.0.2.1:3128")
	srv := newRecorder(t, nil)
	if err := newSender(srv.Server, "127.0.0.0/8").Discord(context.Background(), srv.URL, firing()); err != nil {
		t.Fatalf("Discord: %v", err)
	}
	srv.only(t)
}

func TestBadInputIsPermanent(t *testing.T) {
	s := newSender(nil, "127.0.0.0/8")
	odd := firing()
	odd.Kind = "acknowledged"
	tests := []struct {
		name    string
		err     error
		message string
	}{
		{"unknown event kind", s.Generic(context.Background(), "https://127.0.0.1/", signingKey, odd), `unknown alert event kind "acknowledged"`},
		{"empty signing key", s.Generic(context.Background(), "https://127.0.0.1/", nil, firing()), "the webhook has no signing key"},
		{"not a URL", s.Discord(context.Background(), "https://discord.com/api/webhooks/1/tok%zz", firing()), "the webhook's address must be an https:// URL without credentials"},
		{"userinfo", s.Discord(context.Background(), "https://u:p@127.0.0.1/", firing()), "the webhook's address must be an https:// URL without credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fe *failure.Error
			if !errors.As(tt.err, &fe) || fe.Class != failure.Permanent || fe.Message != tt.message {
				t.Fatalf("err = %#v, want permanent %q", tt.err, tt.message)
			}
		})
	}
}

func TestFailuresDoNotLeakTheURL(t *testing.T) {
	const secret = "SeCrEtToKeN_abc123"
	srv := newRecorder(t, status(404, nil, `{"message":"Unknown Webhook","code":10015}`))
	path := "/api/webhooks/123456789/" + secret + "?wait=false&thread_id=42"
	tests := []struct {
		name string
		url  string
	}{
		{"connection refused", refusedURL(t, path)},
		{"404", srv.URL + path},
		{"unparsable", "https://discord.com/api/webhooks/123456789/" + secret + "%zz"},
	}
	s := newSender(srv.Server, "127.0.0.0/8")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := []error{
				s.Discord(context.Background(), tt.url, firing()),
				s.Generic(context.Background(), tt.url, signingKey, firing()),
			}
			for _, err := range errs {
				if err == nil {
					t.Fatal("delivery succeeded, want a failure")
				}
				texts := []string{failure.UserMessage(err)}
				for e := err; e != nil; e = errors.Unwrap(e) {
					texts = append(texts, e.Error())
				}
				for _, text := range texts {
					for _, leak := range []string{secret, "123456789", "/api/webhooks", "wait=false", "thread_id"} {
						if strings.Contains(text, leak) {
							t.Errorf("error text %q contains %q", text, leak)
						}
					}
				}
			}
		})
	}
}

// checkFailure fails t unless err is a *failure.Error as described.
func checkFailure(t *testing.T, err error, discord bool, class failure.Class, status int, retryAfter time.Duration, message string) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want a *failure.Error", err, err)
	}
	provider := "webhook"
	if discord {
		provider = "discord"
	}
	if fe.Provider != provider || fe.Op != "deliver" || fe.Class != class || fe.Status != status ||
		fe.RetryAfter != retryAfter || fe.Message != message {
		t.Errorf("got %s %s %v status %d retry after %v message %q (err %v)\nwant %s deliver %v status %d retry after %v message %q",
			fe.Provider, fe.Op, fe.Class, fe.Status, fe.RetryAfter, fe.Message, fe.Err,
			provider, class, status, retryAfter, message)
	}
}

// status answers with code, header and body.
func status(code int, header http.Header, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func serverOf(rec *recorder) *httptest.Server {
	if rec == nil {
		return nil
	}
	return rec.Server
}
