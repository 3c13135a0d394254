package backoff

import (
	"testing"
	"time"
)

func TestWaitsStayWithinTheirBounds(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second}
	tests := []struct {
		failures int
		ceiling  time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{7, 10 * time.Second}, // 12.8 s capped
		{64, 10 * time.Second},
		{-1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := p.Ceiling(tt.failures); got != tt.ceiling {
			t.Errorf("Ceiling(%d) = %v, want %v", tt.failures, got, tt.ceiling)
		}
		for range 100 {
			if d := p.Equal(tt.failures); d < tt.ceiling/2 || d > tt.ceiling {
				t.Fatalf("Equal(%d) = %v, want within [%v, %v]", tt.failures, d, tt.ceiling/2, tt.ceiling)
			}
			if d := p.Full(tt.failures); d <= 0 || d > tt.ceiling {
				t.Fatalf("Full(%d) = %v, want within (0, %v]", tt.failures, d, tt.ceiling)
			}
		}
	}
}

func TestWithoutABaseTheWaitIsTheMaximum(t *testing.T) {
	if got := (Policy{Max: time.Minute}).Ceiling(3); got != time.Minute {
		t.Errorf("Ceiling = %v, want the maximum", got)
	}
}
