// Package backoff computes the waits between tries of something that
// failed: exponential, capped, and spread with jitter, so that many clients
// failing at once (every job after a provider outage, every console after
// a Wings restart) do not all come back at the same instant.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy doubles Base with each failure, up to Max.
type Policy struct {
	Base, Max time.Duration
}

// Ceiling is the wait after n failures without jitter: Base·2ⁿ, at most Max
// (Max also when Base is not set).
func (p Policy) Ceiling(n int) time.Duration {
	d := p.Base << min(max(n, 0), 30)
	if d <= 0 || d > p.Max {
		return p.Max
	}
	return d
}

// Equal is a wait between half the ceiling and the ceiling ("equal
// jitter"): spread, but never much shorter than the ceiling.
func (p Policy) Equal(n int) time.Duration {
	d := p.Ceiling(n)
	return d/2 + rand.N(d/2+1)
}

// Full is a wait between nothing and the ceiling ("full jitter"): the
// widest spread, for many clients retrying the same server.
func (p Policy) Full(n int) time.Duration {
	return rand.N(p.Ceiling(n)) + 1
}
