// Package tenantos carries out operations on bare-metal servers through
// the Tenantos panel's API (/api, a Bearer key, answers in a
// {"result": ..., "message": "success"} envelope): servers, their IP
// assignments, power, reinstallations (an OS, a rescue system or a disk
// wipe, by profile), NoVNC consoles and statistics. Every failure is
// classified (see package failure) so that jobs know whether to retry.
//
// The Tenantos API is poorly documented. The paths are confirmed by a
// third-party client; many other wire details are guesses: request body
// field names beyond profileId (the rest follow the seed document), the
// reset and cycle power method names, the paths and bodies that add and
// delete IP assignments, the console's authorizedIp and consoleMode
// parameters, the statistics fields (the IPMI ones entirely), and the error
// shape (Laravel's {"message","errors"} is assumed). Every guess lives in
// wire.go, so that correcting one is a change to that file alone. The
// simulator in ./sim speaks the same guesses.
//
// Numbers may come as numbers or numeric strings and booleans as 1/0;
// answers are decoded tolerantly. The API key and root passwords never
// appear in an error.
package tenantos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hostfleet/provisiond/adapters/httpapi"
)

// Provider is the provider name used in errors, logs and metrics.
const Provider = "tenantos"

// Config says how to reach one Tenantos panel.
type Config struct {
	// URL is the panel's base URL, e.g. https://panel.example.com (no /api).
	URL string
	// APIKey is a panel API key, sent as a Bearer token.
	APIKey string
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

// Client talks to one Tenantos panel. It is safe for concurrent use.
type Client struct {
	base string
	key  string
	http *http.Client
	obs  Observer
}

// New returns a Client for cfg. obs may be nil.
func New(cfg Config, obs Observer) (*Client, error) {
	if cfg.URL == "" || cfg.APIKey == "" {
		return nil, errors.New("tenantos: URL and API key are required")
	}
	base, hc, err := httpapi.NewClient("tenantos", cfg.URL, cfg.Transport, cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	return &Client{base: base, key: cfg.APIKey, http: hc, obs: obs}, nil
}

// call runs one API request, records it and classifies its error. out, when
// not nil, receives the envelope's result. secrets are values of this call
// (a root password) that must not reach an error even if the panel echoes
// them; the key is always among them.
func (c *Client) call(ctx context.Context, op, method, path string, body, out any, secrets ...string) error {
	start := time.Now()
	err := classify(op, c.send(ctx, method, path, body, out, append(secrets, c.key)))
	if c.obs != nil {
		c.obs.ObserveProviderCall(Provider, op, err, time.Since(start))
	}
	return err
}

// send carries out one request. Error statuses come back as *apiError,
// unreadable answers as *decodeError, and everything else as it failed.
func (c *Client) send(ctx context.Context, method, path string, body, out any, secrets []string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			// json's errors name types, never values.
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	// Without it Laravel answers errors with HTML pages and redirects.
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "provisiond")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return readAPIError(res, secrets)
	}
	if out == nil {
		// Read to the end so that a connection cut short shows, and the
		// connection can be used again.
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return &decodeError{err}
		}
		return nil
	}
	var env resultJSON[json.RawMessage]
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil {
		return &decodeError{err}
	}
	if len(env.Result) == 0 {
		return &decodeError{errors.New("no result in the answer")}
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return &decodeError{err}
	}
	return nil
}
