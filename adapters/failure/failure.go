// Package failure classifies what goes wrong when we talk to a provider.
//
// Adapters return a *Error for every provider failure so that the job runner
// can decide, without knowing the provider, whether to try again (Transient:
// timeouts, 5xx, 429, a locked VM) and when (RetryAfter), or to give up at once
// and show the user the provider's own words (Permanent: the provider says the
// input is wrong).
package failure

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Class says whether trying again can help.
type Class int

const (
	// Transient failures may succeed when tried again later.
	Transient Class = iota
	// Permanent failures will fail the same way however often they are tried.
	Permanent
)

func (c Class) String() string {
	if c == Permanent {
		return "permanent"
	}
	return "transient"
}

// ErrNotFound is wrapped by every adapter's not-found error (a VM, a game
// server, a record the provider does not have), so that callers can tell a
// missing object from a failure without knowing the provider.
var ErrNotFound = errors.New("not found")

// Error is a classified provider failure.
type Error struct {
	Class    Class
	Provider string // "proxmox", "pterodactyl", ...
	Op       string // the adapter operation, e.g. "start"
	// Status is the provider's HTTP status, 0 when none was received.
	Status int
	// RetryAfter is how long the provider asked us to wait, 0 if it did not say.
	RetryAfter time.Duration
	// Message is the provider's own explanation, fit to show a user. It never
	// carries credentials.
	Message string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Status != 0 {
		return fmt.Sprintf("%s %s: %d %s", e.Provider, e.Op, e.Status, msg)
	}
	return fmt.Sprintf("%s %s: %s", e.Provider, e.Op, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err, or an error it wraps, is a permanent
// provider failure.
func IsPermanent(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.Class == Permanent
}

// RetryAfter returns the wait the provider asked for, or 0.
func RetryAfter(err error) time.Duration {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.RetryAfter
	}
	return 0
}

// UserMessage returns the text to keep on a failed job: the provider's message
// where there is one, else the error's text.
func UserMessage(err error) string {
	var fe *Error
	if errors.As(err, &fe) && fe.Message != "" {
		return fe.Message
	}
	return err.Error()
}

// ParseRetryAfter reads a Retry-After header in either of its two forms
// (seconds, or an HTTP date after now); 0 when absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
