// Package pterodactyl carries out operations on game servers through the
// Pterodactyl panel's application API (numeric server ids, an application
// key) and client API (8-character identifiers, an admin's client key),
// and classifies every failure (see package failure) so that jobs know
// whether to retry.
package pterodactyl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hostfleet/provisiond/adapters/httpapi"
)

// Provider is the provider name used in errors, logs and metrics.
const Provider = "pterodactyl"

// Config says how to reach one Pterodactyl panel.
type Config struct {
	// URL is the panel's base URL, e.g. https://panel.example.com (no /api).
	URL string
	// ApplicationKey is an application API key ("ptla_...").
	ApplicationKey string
	// ClientKey is a client API key ("ptlc_...") of a root admin, who may
	// act on every server.
	ClientKey string
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

// Client talks to one Pterodactyl panel. It is safe for concurrent use.
type Client struct {
	base      string
	appKey    string
	clientKey string
	http      *http.Client
	obs       Observer
}

// New returns a Client for cfg. obs may be nil.
func New(cfg Config, obs Observer) (*Client, error) {
	if cfg.URL == "" || cfg.ApplicationKey == "" || cfg.ClientKey == "" {
		return nil, errors.New("pterodactyl: URL, application key and client key are required")
	}
	base, hc, err := httpapi.NewClient("pterodactyl", cfg.URL, cfg.Transport, cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	return &Client{base: base, appKey: cfg.ApplicationKey, clientKey: cfg.ClientKey,
		http: hc, obs: obs}, nil
}

// appCall sends a request to the application API (path below
// /api/application) and decodes the answer into out, when not nil.
func (c *Client) appCall(ctx context.Context, op, method, path string, body, out any) error {
	return c.call(ctx, op, c.appKey, method, "/api/application"+path, body, out)
}

// clientCall sends a request about one server to the client API. A 409
// saying the server has not completed its install is transient while the
// server installs, and permanent when its install failed: the server's
// status on the application API tells which.
func (c *Client) clientCall(ctx context.Context, op, method, identifier, path string, body, out any) error {
	err := c.call(ctx, op, c.clientKey, method, "/api/client/servers/"+url.PathEscape(identifier)+path, body, out)
	if installIncomplete(err) {
		// Unread, the status leaves the error transient: a retry asks
		// again.
		if s, serr := c.ServerByIdentifier(ctx, identifier); serr == nil && s.Status == StatusInstallFailed {
			return installFailed(err)
		}
	}
	return err
}

// call runs one API request, records it and classifies its error.
func (c *Client) call(ctx context.Context, op, key, method, path string, body, out any) error {
	start := time.Now()
	err := classify(op, c.send(ctx, key, method, path, body, out))
	if c.obs != nil {
		c.obs.ObserveProviderCall(Provider, op, err, time.Since(start))
	}
	return err
}

// send carries out one request. Error statuses come back as *apiError,
// unreadable answers as *decodeError, and everything else as it failed.
func (c *Client) send(ctx context.Context, key, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	// Without it the panel answers errors with HTML pages and redirects.
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
		return readAPIError(res)
	}
	if out == nil {
		// Read to the end so that a connection cut short shows, and the
		// connection can be used again.
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return &decodeError{err}
		}
		return nil
	}
	dec := json.NewDecoder(res.Body)
	dec.UseNumber() // environment values may be numbers; keep their text
	if err := dec.Decode(out); err != nil {
		return &decodeError{err}
	}
	return nil
}

// decodeError is an answer that could not be read: cut off, or not the
// JSON expected.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "reading answer: " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// item is a Fractal item: {"object":"server","attributes":{...}}.
type item[T any] struct {
	Object     string `json:"object"`
	Attributes T      `json:"attributes"`
}

// list is a Fractal collection, paginated or not.
type list[T any] struct {
	Data []item[T] `json:"data"`
	Meta struct {
		Pagination *pagination `json:"pagination"`
	} `json:"meta"`
}

// pagination is Fractal's meta.pagination.
type pagination struct {
	Total       int `json:"total"`
	CurrentPage int `json:"current_page"`
	TotalPages  int `json:"total_pages"`
}

// perPage is how many items a list asks for at once; 50 is the largest
// page the client API's backup list serves.
const perPage = 50

// allPages reads every page of a paginated list: path, then path?page=2
// and on until meta.pagination says there are no more.
func allPages[T any](ctx context.Context, send func(ctx context.Context, path string, out any) error, path string) ([]T, error) {
	var out []T
	for page := 1; ; page++ {
		var l list[T]
		if err := send(ctx, path+"?per_page="+strconv.Itoa(perPage)+"&page="+strconv.Itoa(page), &l); err != nil {
			return nil, err
		}
		for _, it := range l.Data {
			out = append(out, it.Attributes)
		}
		p := l.Meta.Pagination
		// Stop on an empty page too, so that a panel that ignores ?page
		// cannot keep us here.
		if p == nil || page >= p.TotalPages || len(l.Data) == 0 {
			return out, nil
		}
	}
}

// text is a JSON scalar of unknown type as a string: environment values
// are strings, numbers or null.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// flexBool reads a boolean the panel sends as true/false or as 1/0.
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", "1":
		*b = true
	case "false", "0", "null":
		*b = false
	default:
		return fmt.Errorf("not a boolean: %s", data)
	}
	return nil
}
