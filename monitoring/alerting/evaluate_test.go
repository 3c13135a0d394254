package alerting

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// minutes returns samples one minute apart from t0 with the given CPU
// values; a negative value stands for a missed collection.
func minutes(cpu ...float64) []Sample {
	var out []Sample
	for i, v := range cpu {
		if v < 0 {
			continue
		}
		out = append(out, Sample{At: t0.Add(time.Duration(i) * time.Minute), Online: true, CPU: v})
	}
	return out
}

// replay evaluates a rule round by round, one round per sample, the way
// the collector's rounds see them, and returns the minute of each firing
// and resolving.
func replay(r Rule, samples []Sample) (fired, resolved []int) {
	const maxGap = 90 * time.Second
	for i := range samples {
		now := samples[i].At
		from := now.Add(-3 * time.Minute)
		var window []Sample
		for _, s := range samples[:i+1] {
			if !s.At.Before(from) {
				window = append(window, s)
			}
		}
		out := Evaluate(r, window, from, maxGap)
		r.BreachSince = out.BreachSince
		minute := int(now.Sub(t0) / time.Minute)
		if out.Fire {
			fired = append(fired, minute)
			r.Open = true
		}
		if out.Resolve {
			resolved = append(resolved, minute)
			r.Open = false
		}
	}
	return fired, resolved
}

func TestEvaluate(t *testing.T) {
	cpuOver90 := Rule{Metric: "cpu", Operator: "gt", Threshold: 90, Duration: 3 * time.Minute, Enabled: true}
	for _, tc := range []struct {
		name            string
		rule            Rule
		cpu             []float64
		fired, resolved []int
	}{
		{"fires after exactly the duration of breaching samples", cpuOver90,
			[]float64{95, 95, 95, 95}, []int{3}, nil},
		{"does not fire before the duration", cpuOver90,
			[]float64{95, 95, 95}, nil, nil},
		{"fires once while the condition holds", cpuOver90,
			[]float64{95, 95, 95, 95, 95, 95, 95, 95}, []int{3}, nil},
		{"resolves when the condition stops holding", cpuOver90,
			[]float64{95, 95, 95, 95, 95, 50, 50}, []int{3}, []int{5}},
		{"fires again after resolving and breaching for the duration", cpuOver90,
			[]float64{95, 95, 95, 95, 50, 95, 95, 95, 95}, []int{3, 8}, []int{4}},
		{"a sample under the threshold restarts the duration", cpuOver90,
			[]float64{95, 95, 50, 95, 95, 95, 95}, []int{6}, nil},
		{"a gap in samples restarts the duration", cpuOver90,
			[]float64{95, 95, -1, 95, 95, 95, 95}, []int{6}, nil},
		{"a gap does not resolve an open alert", cpuOver90,
			[]float64{95, 95, 95, 95, -1, -1, 95}, []int{3}, nil},
		{"equal to the threshold is not over it", cpuOver90,
			[]float64{90, 90, 90, 90}, nil, nil},
		{"gte counts equal", Rule{Metric: "cpu", Operator: "gte", Threshold: 90, Duration: time.Minute, Enabled: true},
			[]float64{90, 90}, []int{1}, nil},
		{"lt fires under the threshold", Rule{Metric: "cpu", Operator: "lt", Threshold: 5, Duration: time.Minute, Enabled: true},
			[]float64{1, 1, 20}, []int{1}, []int{2}},
		{"a disabled rule does not fire", Rule{Metric: "cpu", Operator: "gt", Threshold: 90, Duration: time.Minute},
			[]float64{95, 95, 95}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fired, resolved := replay(tc.rule, minutes(tc.cpu...))
			if !slices.Equal(fired, tc.fired) || !slices.Equal(resolved, tc.resolved) {
				t.Errorf("fired at minutes %v, resolved at %v; want fired %v, resolved %v", fired, resolved, tc.fired, tc.resolved)
			}
		})
	}
}

func TestEvaluateOffline(t *testing.T) {
	r := Rule{Metric: "offline", Operator: "gte", Threshold: 1, Duration: 2 * time.Minute, Enabled: true}
	samples := []Sample{{At: t0, Online: false}, {At: t0.Add(time.Minute)}, {At: t0.Add(2 * time.Minute)}, {At: t0.Add(3 * time.Minute), Online: true}}
	fired, resolved := replay(r, samples)
	if !slices.Equal(fired, []int{2}) || !slices.Equal(resolved, []int{3}) {
		t.Errorf("fired %v resolved %v; want fired [2] resolved [3]", fired, resolved)
	}
}

func TestEvaluateAgainGivesTheSameOutcome(t *testing.T) {
	since := t0
	r := Rule{Metric: "cpu", Operator: "gt", Threshold: 90, Duration: 2 * time.Minute, Enabled: true, BreachSince: &since}
	window := minutes(95, 95, 95)
	first := Evaluate(r, window, t0.Add(-time.Minute), 90*time.Second)
	r.BreachSince, r.Open = first.BreachSince, first.Fire
	second := Evaluate(r, window, t0.Add(-time.Minute), 90*time.Second)
	if !first.Fire || second.Fire || second.Resolve || second.Changed {
		t.Errorf("first %+v, second %+v: want a firing, then nothing", first, second)
	}
}

func TestEvaluateDisablingResolves(t *testing.T) {
	r := Rule{Metric: "cpu", Operator: "gt", Threshold: 90, Duration: time.Minute, Open: true}
	if out := Evaluate(r, minutes(95), t0, 90*time.Second); !out.Resolve {
		t.Errorf("outcome %+v: a disabled rule's open alert must resolve", out)
	}
	if out := Evaluate(r, nil, t0, 90*time.Second); !out.Resolve {
		t.Errorf("outcome %+v: a disabled rule's open alert must resolve without samples too", out)
	}
}
