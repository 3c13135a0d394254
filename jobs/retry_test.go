package jobs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
)

func TestRetryPolicyDelay(t *testing.T) {
	p := RetryPolicy{Base: time.Second, Max: time.Minute}
	transient := errors.New("503")
	tests := []struct {
		name     string
		n        int
		err      error
		min, max time.Duration
	}{
		{"first retry waits half to all of the base", 0, transient, 500 * time.Millisecond, time.Second},
		{"wait doubles with each retry", 3, transient, 4 * time.Second, 8 * time.Second},
		{"wait is capped", 20, transient, 30 * time.Second, time.Minute},
		{"a huge retry count does not overflow", 1000, transient, 30 * time.Second, time.Minute},
		{"provider's Retry-After is honoured", 0, fmt.Errorf("wrapped: %w", &failure.Error{RetryAfter: 20 * time.Second}), 20 * time.Second, 22 * time.Second},
		{"Retry-After beyond the cap is capped", 0, &failure.Error{RetryAfter: time.Hour}, time.Minute, time.Minute},
		{"cancelled attempt comes back at once", 5, context.Canceled, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 {
				d := p.Delay(tt.n, tt.err)
				if d < tt.min || d > tt.max {
					t.Fatalf("Delay(%d) = %s, want %s..%s", tt.n, d, tt.min, tt.max)
				}
			}
		})
	}
}
