package tenantos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// ErrNotFound is wrapped by the error of a call the panel answered 404: the
// server or IP assignment does not exist (or the key may not see it).
var ErrNotFound = fmt.Errorf("%w on Tenantos", failure.ErrNotFound)

// apiError is a panel answer with a status of 300 or more, read from
// Laravel's {"message", "errors"} body (see errorJSON).
type apiError struct {
	Status int
	// Message is the panel's explanation; for a 422 its field messages
	// joined.
	Message string
	// Fields are a 422's messages, one per failing field (a field's
	// messages joined), in the panel's order.
	Fields     []string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// readAPIError reads an error answer. A body that is not the panel's JSON
// (a proxy's HTML page) leaves the status text as the message. Every
// secret is cut out of the panel's words, in case it echoes one back.
func readAPIError(res *http.Response, secrets []string) *apiError {
	e := &apiError{Status: res.StatusCode, RetryAfter: failure.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var env errorJSON
	if json.Unmarshal(body, &env) != nil || strings.TrimSpace(env.Message) == "" {
		e.Message = http.StatusText(res.StatusCode)
		if loc := res.Header.Get("Location"); res.StatusCode < 400 && loc != "" {
			// Most often an http:// URL the panel moves to https://, or
			// Laravel sending a call it did not take as an API call to its
			// login page.
			e.Message = "the panel redirected the call to " + loc
		}
		return e
	}
	e.Message = redact(strings.TrimSpace(env.Message), secrets)
	for _, msgs := range readFieldErrors(body) {
		e.Fields = append(e.Fields, redact(strings.Join(msgs, " "), secrets))
	}
	if len(e.Fields) > 0 {
		// Laravel's message is only the first field's with "(and N more
		// errors)": the fields say it all.
		e.Message = strings.Join(e.Fields, " ")
	}
	return e
}

// readFieldErrors reads the "errors" object of a Laravel refusal keeping
// the fields in the order sent (a map would lose it), each with its
// messages.
func readFieldErrors(body []byte) [][]string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || len(top["errors"]) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(top["errors"]))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out [][]string
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the field name
			return out
		}
		var msgs []string
		if err := dec.Decode(&msgs); err != nil {
			// One message instead of a list: take it as it is.
			return out
		}
		var kept []string
		for _, m := range msgs {
			if m = strings.TrimSpace(m); m != "" {
				kept = append(kept, m)
			}
		}
		if len(kept) > 0 {
			out = append(out, kept)
		}
	}
	return out
}

// redact cuts every secret out of s.
func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// decodeError is an answer that could not be read: cut off, or not the
// JSON expected.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "reading answer: " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// classify turns a transport, decoding or status error into a
// *failure.Error. A cancelled context is returned as it is: it says the
// job stopped, not the provider.
func classify(op string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	fe := &failure.Error{Class: failure.Transient, Provider: Provider, Op: op, Err: err}
	var ae *apiError
	var de *decodeError
	var ue *url.Error
	switch {
	case errors.As(err, &ae):
		fe.Status, fe.RetryAfter, fe.Message = ae.Status, ae.RetryAfter, ae.Message
		fe.Class = statusClass(ae.Status)
		if ae.Status == http.StatusNotFound {
			fe.Err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	case errors.As(err, &de):
		// Cut off mid-answer: the call may or may not have happened.
		fe.Message = "unreadable answer from Tenantos"
	case errors.As(err, &ue):
		// Refused, dropped or timed out on the way (http.Client.Do). The
		// url.Error names the URL, which carries no key.
		fe.Message = "Tenantos did not answer in time or the connection failed"
	default:
		fe.Class, fe.Message = failure.Permanent, err.Error()
	}
	return fe
}

// statusClass says whether an error status can clear by itself: a
// throttle, a timeout or the panel's own trouble (often its BMC or switch
// behind it) can; a refusal of the request cannot.
func statusClass(status int) failure.Class {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return failure.Transient
	default:
		return failure.Permanent
	}
}
