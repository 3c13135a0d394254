// Package alerting collects the usage of customers' services from their
// providers, evaluates the customers' alert rules on it, and hands firing
// and resolving alerts to notification jobs.
//
// A round runs every Interval: it splits the monitored services into
// batches by provider node, and each batch is one task that collects its
// node's usage, stores it as samples and evaluates the batch's rules, so a
// slow node holds up only its own batch. Evaluation reads the samples of a
// short window and writes only what changed (a breach starting or ending,
// an alert firing or resolving), so its cost does not grow with the number
// of rules whose state stays the same, and a round can be run again
// without changing the outcome.
package alerting

import (
	"time"
)

// Sample is one collection of a service's usage, in the units rules are
// written in: percent for cpu, memory and disk; Mbit/s for the network.
type Sample struct {
	At                    time.Time
	Online                bool
	CPU, Memory, Disk     float64
	NetworkIn, NetworkOut float64
}

// Value returns the sample's value of a rule's metric; offline is 1 when
// the service was not running and 0 when it was.
func (s Sample) Value(metric string) float64 {
	switch metric {
	case "cpu":
		return s.CPU
	case "memory":
		return s.Memory
	case "disk":
		return s.Disk
	case "network_in":
		return s.NetworkIn
	case "network_out":
		return s.NetworkOut
	case "offline":
		if s.Online {
			return 0
		}
		return 1
	}
	return 0
}

// Unit is how a metric's values and thresholds are measured.
func Unit(metric string) string {
	switch metric {
	case "cpu", "memory", "disk":
		return "%"
	case "network_in", "network_out":
		return "Mbit/s"
	}
	return ""
}

// Rule is an alert rule with its evaluation state.
type Rule struct {
	Metric    string
	Operator  string // gt, gte, lt, lte
	Threshold float64
	Duration  time.Duration
	Enabled   bool
	// BreachSince is when the condition started holding without a gap, as
	// of the last evaluation; nil when it did not hold.
	BreachSince *time.Time
	// Open says the rule has an alert that has not resolved.
	Open bool
}

// Holds reports whether v meets the rule's condition.
func (r Rule) Holds(v float64) bool {
	switch r.Operator {
	case "gt":
		return v > r.Threshold
	case "gte":
		return v >= r.Threshold
	case "lt":
		return v < r.Threshold
	case "lte":
		return v <= r.Threshold
	}
	return false
}

// Outcome is what an evaluation of one rule decided.
type Outcome struct {
	// BreachSince is the rule's new breach start; Changed says it differs
	// from the rule's.
	BreachSince *time.Time
	Changed     bool
	// Fire and Resolve say the rule's alert fires or resolves, with the
	// value of the newest sample, At.
	Fire, Resolve bool
	Value         float64
	At            time.Time
}

// Evaluate runs a rule over a service's samples, oldest first, which are
// every sample from `from` on. Two samples further apart than maxGap are a
// gap, and so is a first sample further than maxGap after from: the
// condition's duration starts again after a gap. The condition has held
// for the rule's duration when breaching samples span it without a gap:
// from the first breaching sample at t0, the rule fires at the sample at
// or after t0 + duration, once; it resolves at the first sample that does
// not breach (or once the rule is disabled). Evaluating the same samples
// again gives the same outcome.
func Evaluate(r Rule, samples []Sample, from time.Time, maxGap time.Duration) Outcome {
	out := Outcome{BreachSince: r.BreachSince}
	if len(samples) == 0 {
		out.Resolve = r.Open && !r.Enabled
		return out
	}
	cur := r.BreachSince
	prev := from
	var last Sample
	breaching := false
	for i, s := range samples {
		gap := s.At.Sub(prev) > maxGap
		breaching = r.Holds(s.Value(r.Metric))
		switch {
		case !breaching:
			cur = nil
		case cur == nil || gap || (i == 0 && cur.After(s.At)):
			at := s.At
			cur = &at
		}
		prev, last = s.At, s
	}
	out.BreachSince = cur
	out.Changed = !sameTime(cur, r.BreachSince)
	out.Value, out.At = last.Value(r.Metric), last.At
	switch {
	case r.Open && (!r.Enabled || !breaching):
		out.Resolve = true
	case !r.Open && r.Enabled && cur != nil && last.At.Sub(*cur) >= r.Duration:
		out.Fire = true
	}
	return out
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
