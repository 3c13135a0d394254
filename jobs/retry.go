package jobs

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/internal/backoff"
)

// RetryPolicy is the wait before a failed attempt is tried again.
type RetryPolicy struct {
	// Base is the wait after the first failure; it doubles with each retry.
	Base time.Duration
	// Max caps the wait, Retry-After included.
	Max time.Duration
}

// Delay returns the wait before retry number n+1 (n retries done so far).
// It grows exponentially with "equal jitter" (half fixed, half random) so
// that a provider outage does not bring every job back at the same instant.
// When the provider said how long to wait (429 Retry-After), the wait is at
// least that long. A cancelled attempt comes back at once: its next
// delivery only notices that the job has ended.
func (p RetryPolicy) Delay(n int, err error) time.Duration {
	if errors.Is(err, context.Canceled) {
		return 0
	}
	if se := (*SnoozeError)(nil); errors.As(err, &se) {
		return se.After
	}
	d := backoff.Policy{Base: p.Base, Max: p.Max}.Equal(n)
	if ra := failure.RetryAfter(err); ra > 0 {
		d = max(d, ra+rand.N(ra/10+1)) // up to a tenth more, spread
	}
	return min(d, p.Max)
}

// SnoozeError puts a job back for later without spending an attempt, as
// River's JobSnooze does: a job that waits for its service to be free, or
// for its time. The job shows it as retrying, with the reason.
type SnoozeError struct {
	After  time.Duration
	Reason string
}

func (e *SnoozeError) Error() string { return e.Reason }

// RetryDelayFunc adapts the policy to asynq.
func (p RetryPolicy) RetryDelayFunc() asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration { return p.Delay(n, err) }
}
