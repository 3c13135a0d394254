// Package httpapi holds what the adapters of providers' HTTP APIs share:
// the client they call a panel with.
package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// NewClient checks a panel's base URL and returns it without a trailing
// slash, with an HTTP client for it: transport (default a clone of
// http.DefaultTransport keeping enough idle connections for many jobs
// polling the same panel), timeout per request (default 30s), and no
// redirects followed: a panel redirects a call it did not take as an API
// call (Laravel sends it to its login page), and followed, the refusal
// would turn into a 200 HTML page. provider names the adapter in errors.
func NewClient(provider, rawURL string, transport http.RoundTripper, timeout time.Duration) (string, *http.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL, never a key: a base URL holds no secret.
		return "", nil, fmt.Errorf("%s: bad URL %q: want http(s)://host", provider, rawURL)
	}
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The default of two idle connections per host would open a new
		// one for nearly every call.
		t.MaxIdleConnsPerHost = 64
		transport = t
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return strings.TrimRight(rawURL, "/"), &http.Client{Transport: transport, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}
