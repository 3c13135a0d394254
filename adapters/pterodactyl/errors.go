package pterodactyl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// ErrNotFound is wrapped by the error of a call the panel answered 404: the
// server, egg or backup does not exist (or the client key may not see it).
var ErrNotFound = fmt.Errorf("%w on Pterodactyl", failure.ErrNotFound)

// apiError is a panel answer with a status of 300 or more, read from its
// JSON:API body {"errors":[{"code","status","detail","meta"}]}.
type apiError struct {
	Status int
	// Code is the panel's exception class, e.g. "ServerStateConflictException".
	Code string
	// Detail is the panel's explanation: its details joined.
	Detail string
	// Fields are a 422's messages, one per failing field.
	Fields     []string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s", e.Status, e.Detail)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Detail)
}

// readAPIError reads an error answer. A body that is not the panel's JSON
// (a proxy's HTML page) leaves the status text as the detail.
func readAPIError(res *http.Response) *apiError {
	e := &apiError{Status: res.StatusCode, RetryAfter: failure.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var env struct {
		Errors []struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
			Meta   struct {
				SourceField string `json:"source_field"`
			} `json:"meta"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 {
		e.Detail = http.StatusText(res.StatusCode)
		if loc := res.Header.Get("Location"); res.StatusCode < 400 && loc != "" {
			// Most often an http:// URL the panel moves to https://.
			e.Detail = "the panel redirected the call to " + loc
		}
		return e
	}
	e.Code = env.Errors[0].Code
	// The panel lists a 422 one failed rule at a time, so a field can come
	// more than once; its messages are kept together, in the panel's order.
	var fields []string
	byField := map[string][]string{}
	var details []string
	for _, x := range env.Errors {
		d := strings.TrimSpace(x.Detail)
		details = append(details, d)
		f := x.Meta.SourceField
		if f == "" {
			continue
		}
		if _, seen := byField[f]; !seen {
			fields = append(fields, f)
		}
		byField[f] = append(byField[f], d)
	}
	e.Detail = strings.Join(details, " ")
	for _, f := range fields {
		e.Fields = append(e.Fields, strings.Join(byField[f], " "))
	}
	return e
}

// ValidationErrors returns the per-field messages of a 422 (one string per
// failing field, the provider's wording), or nil for other errors.
func ValidationErrors(err error) []string {
	var e *apiError
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity {
		return nil
	}
	if len(e.Fields) == 0 {
		return []string{e.Detail}
	}
	return slices.Clone(e.Fields)
}

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
		fe.Status, fe.RetryAfter, fe.Message = ae.Status, ae.RetryAfter, ae.Detail
		fe.Class = statusClass(ae)
		if ae.Status == http.StatusNotFound {
			fe.Err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	case errors.As(err, &de):
		// Cut off mid-answer: the call may or may not have happened.
		fe.Message = "unreadable answer from Pterodactyl"
	case errors.As(err, &ue):
		// Refused, dropped or timed out on the way (http.Client.Do).
		fe.Message = "Pterodactyl did not answer in time or the connection failed"
	default:
		fe.Class, fe.Message = failure.Permanent, err.Error()
	}
	return fe
}

// statusClass says whether an error status can clear by itself.
func statusClass(e *apiError) failure.Class {
	switch {
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout, e.Status >= 500:
		return failure.Transient
	case e.Status == http.StatusConflict:
		// ServerStateConflictException: installing, restoring a backup,
		// being transferred or the node in maintenance all end by
		// themselves; a suspension does not. A failed install gets the
		// installing server's words: clientCall tells the two apart.
		if strings.Contains(strings.ToLower(e.Detail), "suspended") {
			return failure.Permanent
		}
		return failure.Transient
	default:
		return failure.Permanent
	}
}

// installIncomplete reports whether err is the panel's 409 for a server
// that "has not yet completed its installation process". The panel says
// so both of a server still installing and of one whose install failed
// (Server::isInstalled is false for both), so the words alone cannot say
// whether a retry can help.
func installIncomplete(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusConflict &&
		strings.Contains(strings.ToLower(ae.Detail), "not yet completed its installation")
}

// InstallFailedMessage is the message of a call refused because the
// server's install failed.
const InstallFailedMessage = "the server's installation failed; reinstall it"

// installFailed turns the classified error of a call the panel refused
// because the server's install failed into a permanent one that says so.
func installFailed(err error) error {
	var fe *failure.Error
	if !errors.As(err, &fe) {
		return err
	}
	out := *fe
	out.Class, out.RetryAfter, out.Message = failure.Permanent, 0, InstallFailedMessage
	return &out
}
