// Package cloudflare keeps DNS records on Cloudflare: it lists the zones a
// token reaches and lists, creates, replaces and deletes the A, AAAA,
// CNAME, TXT, MX and SRV records of a zone. It speaks through Cloudflare's
// own SDK, github.com/cloudflare/cloudflare-go/v6, and hands out its own
// types, not the SDK's, so that callers do not depend on the SDK's
// generated unions and optional-field wrappers. Every failure is classified
// (see package failure) so that jobs know whether to retry.
//
// The job runner retries, not the SDK: the client is built with
// option.WithMaxRetries(0). Left to itself the SDK tries a call up to ten
// more times on 408, 409, 429 and 5xx, sleeping inside the call; a job
// would then hold its worker for minutes and retry on top of that. Instead
// a throttled or failed call comes back at once as a transient
// *failure.Error carrying Cloudflare's Retry-After, and the runner decides.
//
// The API token is sent as a Bearer token and never appears in an error:
// refusals are read into this package's own error (the SDK's keeps the
// request, Authorization header included), and Cloudflare's words are
// stripped of the token in case it echoes it back.
package cloudflare

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	cf "github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/option"

	"github.com/hostfleet/provisiond/adapters/httpapi"
)

// Provider is the provider name used in errors, logs and metrics.
const Provider = "cloudflare"

// DefaultBaseURL is Cloudflare's API, used when Config.BaseURL is empty.
const DefaultBaseURL = "https://api.cloudflare.com/client/v4"

// Config says how to reach Cloudflare's API.
type Config struct {
	// BaseURL is the API's base URL including /client/v4; default
	// DefaultBaseURL. A simulator's is its URL followed by /client/v4.
	BaseURL string
	// APIToken is an API token with DNS edit and zone read permissions,
	// sent as a Bearer token.
	APIToken string
	// RequestTimeout bounds one HTTP request; default 30s.
	RequestTimeout time.Duration
	// Transport, when set, carries the requests instead of a clone of
	// http.DefaultTransport: for a proxy, or for tests.
	Transport http.RoundTripper
}

// Observer records provider calls; *metrics.Metrics implements it.
type Observer interface {
	ObserveProviderCall(provider, op string, err error, d time.Duration)
}

// Client talks to Cloudflare's API with one token. It is safe for
// concurrent use.
type Client struct {
	api   *cf.Client
	token string
	obs   Observer
}

// New returns a Client for cfg. obs may be nil.
func New(cfg Config, obs Observer) (*Client, error) {
	if cfg.APIToken == "" {
		return nil, errors.New("cloudflare: an API token is required")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	// httpapi's client checks the URL, sets the timeout and follows no
	// redirect, as for every other provider.
	base, hc, err := httpapi.NewClient(Provider, cfg.BaseURL, cfg.Transport, cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	api := cf.NewClient(
		option.WithHTTPClient(hc),
		option.WithBaseURL(base+"/"),
		option.WithAPIToken(cfg.APIToken),
		// The job runner retries; see the package documentation.
		option.WithMaxRetries(0),
		// NewClient also reads CLOUDFLARE_API_KEY, CLOUDFLARE_EMAIL and
		// CLOUDFLARE_API_USER_SERVICE_KEY from the environment and would
		// send them next to our token; only the configured token may
		// authenticate this client.
		option.WithHeaderDel("X-Auth-Key"),
		option.WithHeaderDel("X-Auth-Email"),
		option.WithHeaderDel("X-Auth-User-Service-Key"),
	)
	return &Client{api: api, token: cfg.APIToken, obs: obs}, nil
}

// call runs one SDK call, records it and classifies its error.
func (c *Client) call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	start := time.Now()
	err := c.classify(op, f(ctx))
	if c.obs != nil {
		c.obs.ObserveProviderCall(Provider, op, err, time.Since(start))
	}
	return err
}

// redact cuts the token out of s.
func (c *Client) redact(s string) string {
	return strings.ReplaceAll(s, c.token, "[redacted]")
}
