package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
)

const (
	providerDiscord = "discord"
	providerWebhook = "webhook"

	// maxBody bounds what we read of an answer (and its headers): a hostile
	// receiver must not be able to make us buffer much.
	maxBody = 64 << 10
	// maxRetryAfter caps a retry_after from a body; anything larger is junk.
	maxRetryAfter = 24 * time.Hour
)

// errBadURL stands in for url.Parse's error, which quotes the URL.
var errBadURL = errors.New("invalid webhook URL")

// internalAddrError is what the dial guard returns for an address it refuses.
type internalAddrError struct{ addr netip.Addr }

func (e *internalAddrError) Error() string {
	return "refusing to connect to internal address " + e.addr.String()
}

// Sender delivers notifications. Its HTTP client dials only addresses the
// Guard allows, checked at connect time (net.Dialer.Control), so a DNS
// answer that changes after CheckURL cannot point a delivery into our own
// network. It does not follow redirects. A Sender is safe for concurrent use.
type Sender struct {
	client    *http.Client
	guard     *Guard
	timeout   time.Duration
	userAgent string
	now       func() time.Time
}

// SenderConfig configures a Sender.
type SenderConfig struct {
	// Guard decides where deliveries may connect; required.
	Guard *Guard
	// Timeout bounds each delivery; 0 means 10s.
	Timeout time.Duration
	// RootCAs, when set, are the CAs trusted for https (tests pass
	// httptest's); nil means the system's.
	RootCAs *x509.CertPool
	// UserAgent; "" means "provisiond-alerts/1".
	UserAgent string
	// Now is the clock used for the signature timestamp, sentAt and
	// Retry-After dates; nil means time.Now.
	Now func() time.Time
}

// NewSender returns a Sender configured by cfg. It panics if cfg.Guard is
// nil: a Sender without a guard would call anywhere.
func NewSender(cfg SenderConfig) *Sender {
	g := cfg.Guard
	if g == nil {
		panic("webhook: NewSender needs a Guard")
	}
	s := &Sender{guard: g, timeout: cfg.Timeout, userAgent: cfg.UserAgent, now: cfg.Now}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	if s.userAgent == "" {
		s.userAgent = "provisiond-alerts/1"
	}
	if s.now == nil {
		s.now = time.Now
	}
	dialer := &net.Dialer{
		Resolver: g.Resolver,
		// Control sees the address after DNS, just before connecting: the
		// only point where the check cannot be raced.
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || g.Internal(ap.Addr()) {
				return &internalAddrError{ap.Addr().WithZone("").Unmap()}
			}
			return nil
		},
	}
	s.client = &http.Client{
		Transport: &http.Transport{
			// No Proxy: a proxy would connect for us, past the dial guard.
			DialContext:            dialer.DialContext,
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
			ForceAttemptHTTP2:      true,
			IdleConnTimeout:        90 * time.Second,
			MaxResponseHeaderBytes: maxBody,
		},
		// A redirect could point inside our network, and no webhook needs one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// post sends body to raw and classifies the outcome; provider names the
// kind of webhook in errors.
func (s *Sender) post(ctx context.Context, provider, raw string, h http.Header, body []byte) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Host == "" {
		return fail(provider, failure.Permanent, 0, "the webhook's address "+notHTTPS, errBadURL)
	}
	if u.Scheme == "http" {
		// The dial guard cannot tell http from https; CheckURL allows http
		// only to in-house receivers.
		if reason := s.guard.CheckURL(ctx, raw); reason != "" {
			return fail(provider, failure.Permanent, 0, "the webhook's address "+reason, nil)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return fail(provider, failure.Permanent, 0, "the webhook's address "+notHTTPS, errBadURL)
	}
	req.Header = h
	resp, err := s.client.Do(req)
	if err != nil {
		return connFailure(provider, err, ctx.Err())
	}
	defer resp.Body.Close()
	// A read error leaves a short answer; the status has already been given.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return s.classify(provider, resp, answer)
}

// header returns the headers every delivery carries.
func (s *Sender) header() http.Header {
	return http.Header{
		"Content-Type": {"application/json"},
		"User-Agent":   {s.userAgent},
	}
}

// classify turns an answer into nil (any 2xx) or a *failure.Error.
func (s *Sender) classify(provider string, resp *http.Response, answer []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	who := "the webhook"
	if provider == providerDiscord {
		who = "Discord"
	}
	if code >= 300 && code < 400 {
		return fail(provider, failure.Permanent, code, who+" answered a redirect", nil)
	}
	msg := strings.TrimSpace(fmt.Sprintf("%s answered %d %s", who, code, http.StatusText(code)))
	// Discord explains itself in JSON ("Unknown Webhook"); a generic
	// receiver's body is not shown, as it could echo anything.
	var d struct {
		Message    string  `json:"message"`
		RetryAfter float64 `json:"retry_after"`
	}
	if provider == providerDiscord && json.Unmarshal(answer, &d) == nil && d.Message != "" {
		msg += ": " + truncate(d.Message, 200)
	}
	if code != http.StatusRequestTimeout && code != http.StatusTooManyRequests && code < 500 {
		return fail(provider, failure.Permanent, code, msg, nil)
	}
	fe := fail(provider, failure.Transient, code, msg, nil)
	fe.RetryAfter = failure.ParseRetryAfter(resp.Header.Get("Retry-After"), s.now())
	if fe.RetryAfter == 0 && d.RetryAfter > 0 && d.RetryAfter < maxRetryAfter.Seconds() {
		fe.RetryAfter = time.Duration(d.RetryAfter * float64(time.Second))
	}
	return fe
}

// connFailure classifies an error from http.Client.Do; ctxErr is the
// delivery context's, which names the cause better than a closed connection.
func connFailure(provider string, err, ctxErr error) *failure.Error {
	// *url.Error's text quotes the URL, and with it a Discord token.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ie *internalAddrError
	if errors.As(err, &ie) {
		msg := "the webhook connects to " + ie.addr.String() + ", an internal address"
		return fail(provider, failure.Permanent, 0, msg, err)
	}
	return fail(provider, failure.Transient, 0, "connection failed: "+connReason(cmp.Or(ctxErr, err)), err)
}

// connReason names what went wrong with a connection in a customer's words.
// It does not use err's text, which may name the host.
func connReason(err error) string {
	var ne net.Error
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "host does not resolve"
		}
		return "host lookup failed"
	case errors.As(err, &certErr):
		return "the server's TLS certificate is not valid"
	}
	return "network error"
}

// fail builds the *failure.Error for a failed delivery.
func fail(provider string, class failure.Class, status int, msg string, err error) *failure.Error {
	return &failure.Error{Class: class, Provider: provider, Op: "deliver", Status: status, Message: msg, Err: err}
}
