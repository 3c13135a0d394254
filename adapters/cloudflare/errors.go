package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	cf "github.com/cloudflare/cloudflare-go/v6"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// ErrNotFound is wrapped by the error of a call Cloudflare answered 404:
// the record does not exist (any more).
var ErrNotFound = fmt.Errorf("%w on Cloudflare", failure.ErrNotFound)

// apiError is a Cloudflare refusal, read from the SDK's error without its
// request (which carries the token).
type apiError struct {
	Status int
	// Codes are Cloudflare's error codes, the innermost of each error
	// chain ("9005"), in the order answered.
	Codes []int
	// Message is Cloudflare's explanation, the innermost messages of its
	// error chains joined.
	Message    string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %v %s", e.Status, e.Codes, e.Message)
}

// errorItem is one entry of the envelope's "errors". The SDK's
// shared.ErrorData has no error_chain, where Cloudflare puts the reason of
// a validation refusal (the top entry only says "DNS Validation Error"),
// so the body is read again here.
type errorItem struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Chain   []errorItem `json:"error_chain"`
}

// leaves appends the innermost entries of it.
func (it errorItem) leaves(out []errorItem) []errorItem {
	if len(it.Chain) == 0 {
		return append(out, it)
	}
	for _, c := range it.Chain {
		out = c.leaves(out)
	}
	return out
}

// readAPIError turns the SDK's error into an *apiError.
func (c *Client) readAPIError(ae *cf.Error) *apiError {
	e := &apiError{Status: ae.StatusCode}
	if ae.Response != nil {
		e.RetryAfter = failure.ParseRetryAfter(ae.Response.Header.Get("Retry-After"), time.Now())
	}
	var body struct {
		Errors []errorItem `json:"errors"`
	}
	if json.Unmarshal([]byte(ae.JSON.RawJSON()), &body) != nil || len(body.Errors) == 0 {
		for _, d := range ae.Errors {
			body.Errors = append(body.Errors, errorItem{Code: int(d.Code), Message: d.Message})
		}
	}
	var leaves []errorItem
	for _, it := range body.Errors {
		leaves = it.leaves(leaves)
	}
	var msgs []string
	for _, l := range leaves {
		e.Codes = append(e.Codes, l.Code)
		if m := strings.TrimSpace(l.Message); m != "" {
			msgs = append(msgs, c.redact(m))
		}
	}
	e.Message = strings.Join(msgs, " ")
	if e.Message == "" {
		// A proxy's page or an empty body.
		e.Message = http.StatusText(e.Status)
	}
	return e
}

// classify turns the SDK's error into a *failure.Error. A cancelled
// context is returned as it is: it says the job stopped, not Cloudflare.
func (c *Client) classify(op string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	fe := &failure.Error{Class: failure.Transient, Provider: Provider, Op: op, Err: err}
	var ae *cf.Error
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &ae):
		e := c.readAPIError(ae)
		fe.Status, fe.RetryAfter, fe.Message, fe.Err = e.Status, e.RetryAfter, e.Message, e
		fe.Class = statusClass(e.Status)
		if e.Status == http.StatusNotFound {
			fe.Err = fmt.Errorf("%w: %w", ErrNotFound, e)
		}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		fe.Message = "Cloudflare did not answer in time"
	case errors.As(err, &ue):
		// Refused or dropped on the way. The url.Error names the URL,
		// which carries no token.
		fe.Message = "the connection to Cloudflare failed"
	default:
		// The SDK's other errors come after the request was sent: an
		// answer cut off or not the JSON expected. The call may or may
		// not have happened.
		fe.Message = "unreadable answer from Cloudflare"
	}
	return fe
}

// statusClass says whether an error status can clear by itself: a
// throttle, a timeout or Cloudflare's own trouble can; a refusal of the
// request (invalid content, a conflict, a missing record, a token
// without permission) cannot.
func statusClass(status int) failure.Class {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return failure.Transient
	default:
		return failure.Permanent
	}
}
