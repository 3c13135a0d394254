// Package webhook delivers alert notifications to customers' webhooks:
// Discord webhooks, and generic endpoints that receive signed JSON.
//
// Customers choose the URLs, so each one is a possible way into our own
// network. [Guard.CheckURL] refuses internal addresses when a URL is saved,
// and a [Sender] checks again on every connection, after DNS, so a name
// that later resolves elsewhere gains nothing. Redirects are not followed.
//
// Every failed delivery is a *failure.Error (Op "deliver", Provider
// "discord" or "webhook"): transient for network errors, timeouts, 408, 429
// and 5xx, with RetryAfter when the receiver asked for a wait; permanent
// otherwise. Its Message is fit to show the customer and never contains the
// URL, which may carry a secret token.
//
// # Generic webhooks
//
// A generic webhook receives a POST with these headers:
//
//	Content-Type: application/json
//	User-Agent: provisiond-alerts/1
//	X-Provisiond-Event: firing            (or resolved)
//	X-Provisiond-Delivery: <delivery id>  (the same on every retry)
//	X-Provisiond-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//
// and this body:
//
//	{
//	  "id": "<delivery id>",
//	  "event": "firing",                   // or "resolved"
//	  "alert": {
//	    "id": "<fired alert id>",
//	    "ruleId": "<alert rule id>",
//	    "metricType": "cpu",               // memory, disk, network_in, network_out, offline
//	    "operator": "gt",                  // gte, lt, lte
//	    "threshold": 90,
//	    "unit": "%",                       // "Mbit/s"; "" for offline
//	    "value": 97.5,                     // when it fired, or when it resolved
//	    "severity": "critical",            // warning, info
//	    "durationMinutes": 5,
//	    "firedAt": "2025-01-02T15:04:05Z", // RFC 3339, UTC
//	    "resolvedAt": null                 // RFC 3339 once resolved
//	  },
//	  "service": {"id": "<service id>", "name": "<service name>"},
//	  "profile": "<monitoring profile name, may be empty>",
//	  "sentAt": "2025-01-02T15:04:07Z"     // this attempt; the signature's t
//	}
//
// The signature's v1 is HMAC-SHA256, keyed with the webhook's signing key,
// of t, a ".", and the body exactly as received. Receivers should
// recompute it in constant time, refuse a t more than a few minutes from
// their clock, and ignore a delivery id they have already handled: a failed
// delivery is retried with the same id. [Verify] does the first two.
//
// Any 2xx answer means delivered. 408, 429 and 5xx answers are retried
// later, honouring Retry-After; other answers, redirects included, are not.
package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// Event is one alert firing or resolving.
type Event struct {
	ID              string // unique per delivery event (the same on every retry), e.g. fired alert id + ":firing"
	Kind            string // "firing" or "resolved"
	AlertID         string // the fired alert's id
	RuleID          string
	ServiceID       string
	ServiceName     string
	Profile         string // the team's monitoring profile name, may be ""
	MetricType      string // cpu, memory, disk, network_in, network_out, offline
	Operator        string // gt, gte, lt, lte
	Threshold       float64
	Unit            string  // "%", "Mbit/s", "" (offline)
	Value           float64 // the value seen when it fired (or when it resolved)
	Severity        string  // info, warning, critical
	DurationMinutes int
	FiredAt         time.Time
	ResolvedAt      *time.Time // set for "resolved"
}

// Discord posts e to a Discord webhook as an embed. The URL is used as
// given, query included.
func (s *Sender) Discord(ctx context.Context, url string, e Event) error {
	if err := e.check(providerDiscord); err != nil {
		return err
	}
	body, err := json.Marshal(discordMessage(e, s.now()))
	if err != nil {
		return fail(providerDiscord, failure.Permanent, 0, "the notification could not be encoded", fmt.Errorf("encoding discord message: %w", err))
	}
	return s.post(ctx, providerDiscord, url, s.header(), body)
}

// Generic posts e as JSON to a generic webhook, signed with key; the
// package documentation describes the request. key must not be empty.
func (s *Sender) Generic(ctx context.Context, url string, key []byte, e Event) error {
	if err := e.check(providerWebhook); err != nil {
		return err
	}
	if len(key) == 0 {
		// An empty key signs nothing a receiver could trust.
		return fail(providerWebhook, failure.Permanent, 0, "the webhook has no signing key", nil)
	}
	now := s.now()
	body, err := json.Marshal(genericMessage(e, now))
	if err != nil {
		return fail(providerWebhook, failure.Permanent, 0, "the notification could not be encoded", fmt.Errorf("encoding webhook body: %w", err))
	}
	h := s.header()
	h.Set("X-Provisiond-Event", e.Kind)
	h.Set("X-Provisiond-Delivery", e.ID)
	h.Set("X-Provisiond-Signature", Sign(key, now, body))
	return s.post(ctx, providerWebhook, url, h, body)
}

// check refuses an event no receiver could make sense of.
func (e *Event) check(provider string) *failure.Error {
	if e.Kind != "firing" && e.Kind != "resolved" {
		return fail(provider, failure.Permanent, 0, fmt.Sprintf("unknown alert event kind %q", e.Kind), nil)
	}
	return nil
}

// genericMessage is the generic webhook's body; see the package doc.
func genericMessage(e Event, now time.Time) any {
	type alert struct {
		ID              string  `json:"id"`
		RuleID          string  `json:"ruleId"`
		MetricType      string  `json:"metricType"`
		Operator        string  `json:"operator"`
		Threshold       float64 `json:"threshold"`
		Unit            string  `json:"unit"`
		Value           float64 `json:"value"`
		Severity        string  `json:"severity"`
		DurationMinutes int     `json:"durationMinutes"`
		FiredAt         string  `json:"firedAt"`
		ResolvedAt      *string `json:"resolvedAt"`
	}
	type service struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	a := alert{e.AlertID, e.RuleID, e.MetricType, e.Operator, e.Threshold, e.Unit, e.Value,
		e.Severity, e.DurationMinutes, rfc3339(e.FiredAt), nil}
	if e.ResolvedAt != nil {
		r := rfc3339(*e.ResolvedAt)
		a.ResolvedAt = &r
	}
	return struct {
		ID      string  `json:"id"`
		Event   string  `json:"event"`
		Alert   alert   `json:"alert"`
		Service service `json:"service"`
		Profile string  `json:"profile"`
		SentAt  string  `json:"sentAt"`
	}{e.ID, e.Kind, a, service{e.ServiceID, e.ServiceName}, e.Profile, rfc3339(now)}
}

// colorResolved is a resolved alert's embed colour; a firing one has its
// severity's.
const colorResolved = 0x2ECC71

// severities are the emoji and embed colour of each alert severity.
var severities = map[string]struct {
	emoji string
	color int
}{"critical": {"🔴", 0xE74C3C}, "warning": {"🟠", 0xE67E22}, "info": {"🔵", 0x3498DB}}

// operators are each rule operator's words and symbol.
var operators = map[string][2]string{
	"gt": {"above", ">"}, "gte": {"at or above", "≥"}, "lt": {"below", "<"}, "lte": {"at or below", "≤"},
}

// metricNames are the metric types' names in titles.
var metricNames = map[string]string{
	"cpu": "CPU", "memory": "Memory", "disk": "Disk",
	"network_in": "Inbound traffic", "network_out": "Outbound traffic", "offline": "Offline",
}

type discordField struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Inline bool   `json:"inline"`
}

// discordMessage is e in Discord's execute-webhook format.
func discordMessage(e Event, now time.Time) any {
	type footer struct {
		Text string `json:"text"`
	}
	type embed struct {
		Title       string         `json:"title"`
		Description string         `json:"description"`
		Color       int            `json:"color"`
		Fields      []discordField `json:"fields"`
		Timestamp   string         `json:"timestamp"`
		Footer      footer         `json:"footer"`
	}
	type mentions struct {
		Parse []string `json:"parse"`
	}
	// Long names would push the embed past Discord's 6000-character total.
	name := truncate(cmp.Or(e.ServiceName, e.ServiceID, "your server"), 100)
	metric := cmp.Or(metricNames[e.MetricType], e.MetricType)
	op, ok := operators[e.Operator]
	if !ok {
		op = [2]string{e.Operator, e.Operator}
	}
	opWords, opSym := op[0], op[1]
	sev, ok := severities[e.Severity]
	if !ok {
		sev = severities["info"]
	}
	threshold, value := quantity(e.Threshold, e.Unit), quantity(e.Value, e.Unit)
	forDur := ""
	if e.DurationMinutes > 0 {
		forDur = fmt.Sprintf(" for %d min", e.DurationMinutes)
	}
	lasted := ""
	if e.ResolvedAt != nil && !e.FiredAt.IsZero() {
		lasted = fmt.Sprintf(" after %d min", int(e.ResolvedAt.Sub(e.FiredAt).Round(time.Minute)/time.Minute))
	}

	var title, desc string
	color, ts := sev.color, e.FiredAt
	offline := e.MetricType == "offline"
	switch {
	case e.Kind == "resolved" && offline:
		title, desc = "✅ Back online: "+name, name+" is reporting again"+lasted+"."
	case e.Kind == "resolved":
		title = "✅ Resolved: " + metric + " on " + name
		desc = fmt.Sprintf("%s on %s is no longer %s %s%s (now %s).", metric, name, opWords, threshold, lasted, value)
	case offline:
		title, desc = sev.emoji+" Server offline: "+name, name+" has not reported"+forDur+"."
	default:
		title = fmt.Sprintf("%s %s %s %s on %s", sev.emoji, metric, opWords, threshold, name)
		desc = fmt.Sprintf("%s on %s has been %s %s%s (%s when the alert fired).", metric, name, opWords, threshold, forDur, value)
	}
	if e.Kind == "resolved" {
		color = colorResolved
		if e.ResolvedAt != nil {
			ts = *e.ResolvedAt
		}
	}
	if ts.IsZero() {
		ts = now
	}

	fields := []discordField{field("Metric", e.MetricType)}
	if offline {
		fields = append(fields, field("Threshold", "offline"+forDur))
	} else {
		fields = append(fields, field("Value", value), field("Threshold", opSym+" "+threshold+forDur))
	}
	fields = append(fields, field("Severity", e.Severity))

	return struct {
		Username        string   `json:"username"`
		Embeds          []embed  `json:"embeds"`
		AllowedMentions mentions `json:"allowed_mentions"`
	}{
		Username: discordUsername(e.Profile),
		Embeds: []embed{{
			Title:       truncate(title, 256),
			Description: truncate(desc, 4096),
			Color:       color,
			Fields:      fields,
			Timestamp:   rfc3339(ts),
			Footer:      footer{truncate("alert "+e.AlertID, 2048)},
		}},
		// Service names are customers' text: never let them ping anyone.
		AllowedMentions: mentions{Parse: []string{}},
	}
}

// field is an inline embed field; Discord refuses an empty value.
func field(name, value string) discordField {
	return discordField{Name: name, Value: truncate(cmp.Or(value, "-"), 1024), Inline: true}
}

// discordUsername is the profile name when Discord would accept it as a
// webhook's username (1 to 80 characters, none of its reserved words),
// else "Provisiond alerts". A refused username would fail the delivery.
func discordUsername(profile string) string {
	const fallback = "Provisiond alerts"
	p := strings.TrimSpace(profile)
	l := strings.ToLower(p)
	if p == "" || utf8.RuneCountInString(p) > 80 || l == "everyone" || l == "here" ||
		strings.ContainsAny(p, "@#:") || strings.Contains(p, "```") ||
		strings.Contains(l, "discord") || strings.Contains(l, "clyde") {
		return fallback
	}
	return p
}

// quantity formats v with at most two decimals, then its unit.
func quantity(v float64, unit string) string {
	s := strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	if unit == "" {
		return s
	}
	return s + " " + unit
}

// truncate cuts s to at most n characters, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
