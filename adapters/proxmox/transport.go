package proxmox

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// httpError is a Proxmox answer with a status of 400 or more.
type httpError struct {
	Status     int
	Reason     string // PVE puts its message in the reason phrase ("500 VM 100 not running")
	Params     map[string]string
	RetryAfter time.Duration
}

func (e *httpError) Error() string {
	msg := e.Reason
	if len(e.Params) > 0 {
		b, _ := json.Marshal(e.Params)
		msg += " " + string(b)
	}
	return fmt.Sprintf("%d %s", e.Status, msg)
}

// statusTransport turns every error status into an *httpError before
// go-proxmox sees the response. go-proxmox only checks 400, 401, 403, 500 and
// 501 and decodes anything else as success, so a 429 or 503 would otherwise
// pass for a successful call with an empty result.
type statusTransport struct {
	next http.RoundTripper
}

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	if err != nil || res.StatusCode < 400 {
		return res, err
	}
	defer res.Body.Close()
	e := &httpError{
		Status:     res.StatusCode,
		Reason:     strings.TrimSpace(strings.TrimPrefix(res.Status, strconv.Itoa(res.StatusCode))),
		RetryAfter: failure.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now()),
	}
	// 400 bodies carry {"errors":{"param":"message"}}; a short read is enough.
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var env struct {
		Errors  map[string]string `json:"errors"`
		Message string            `json:"message"`
	}
	if json.Unmarshal(body, &env) == nil {
		e.Params = env.Errors
		if e.Reason == "" || e.Reason == http.StatusText(res.StatusCode) {
			if m := strings.TrimSpace(env.Message); m != "" {
				e.Reason = m
			}
		}
	}
	return nil, e
}
