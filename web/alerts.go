package web

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/monitoring/alerting"
	"github.com/hostfleet/provisiond/queries"
)

var (
	alertMetrics    = []string{"cpu", "memory", "disk", "network_in", "network_out", "offline"}
	alertOperators  = []string{"gt", "gte", "lt", "lte"}
	alertSeverities = []string{"info", "warning", "critical"}
	// percentMetrics are measured in percent, so a threshold over 100 can
	// never be crossed.
	percentMetrics = []string{"cpu", "memory", "disk"}
)

// maxAlertRules bounds a service's alert rules: each that fires sends a
// notification per channel.
const maxAlertRules = 25

// alertRuleJSON is an alert rule as the API shows it.
type alertRuleJSON struct {
	ID              uuid.UUID `json:"id"`
	ServiceID       uuid.UUID `json:"serviceId"`
	MetricType      string    `json:"metricType"`
	Operator        string    `json:"operator"`
	Threshold       float64   `json:"threshold"`
	DurationMinutes int32     `json:"durationMinutes"`
	Severity        string    `json:"severity"`
	Enabled         bool      `json:"enabled"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

func toAlertRuleJSON(r queries.AlertRule) alertRuleJSON {
	return alertRuleJSON{ID: r.ID, ServiceID: r.ServiceID, MetricType: r.MetricType, Operator: r.Operator,
		Threshold: r.Threshold, DurationMinutes: r.DurationMinutes, Severity: r.Severity, Enabled: r.Enabled,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// alertRuleRequest creates a rule (all fields) or changes one (PATCH: the
// fields given).
type alertRuleRequest struct {
	MetricType      *string  `json:"metricType"`
	Operator        *string  `json:"operator"`
	Threshold       *float64 `json:"threshold"`
	DurationMinutes *int32   `json:"durationMinutes"`
	Severity        *string  `json:"severity"`
	Enabled         *bool    `json:"enabled"`
}

// validate checks the rule the request leaves, given the metric it is on.
func validateAlertRule(metric, operator string, threshold float64, minutes int32, severity string) []string {
	var errs []string
	if !slices.Contains(alertMetrics, metric) {
		errs = append(errs, oneOf("metricType", alertMetrics))
	}
	if !slices.Contains(alertOperators, operator) {
		errs = append(errs, oneOf("operator", alertOperators))
	}
	switch {
	case slices.Contains(percentMetrics, metric) && (threshold < 0 || threshold > 100):
		errs = append(errs, "threshold is a percentage for "+metric+": from 0 to 100")
	case threshold < 0:
		errs = append(errs, "threshold cannot be negative")
	}
	if minutes < 1 || minutes > 1440 {
		errs = append(errs, "durationMinutes must be from 1 to 1440")
	}
	if !slices.Contains(alertSeverities, severity) {
		errs = append(errs, oneOf("severity", alertSeverities))
	}
	return errs
}

// listAlertRules answers the service's alert rules.
func (s *Server) listAlertRules(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	rules, err := s.Queries.ListAlertRules(r.Context(), svc.ID)
	if err != nil {
		return err
	}
	out := make([]alertRuleJSON, 0, len(rules))
	for _, rule := range rules {
		out = append(out, toAlertRuleJSON(rule))
	}
	ok(w, http.StatusOK, "rules", out)
	return nil
}

// createAlertRule adds a rule to the service.
func (s *Server) createAlertRule(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	var req alertRuleRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	var missing []string
	for name, v := range map[string]bool{"metricType": req.MetricType == nil, "operator": req.Operator == nil,
		"threshold": req.Threshold == nil, "durationMinutes": req.DurationMinutes == nil, "severity": req.Severity == nil} {
		if v {
			missing = append(missing, name+" is required")
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return invalid(missing...)
	}
	if errs := validateAlertRule(*req.MetricType, *req.Operator, *req.Threshold, *req.DurationMinutes, *req.Severity); len(errs) > 0 {
		return invalid(errs...)
	}
	rule, err := s.Queries.CreateAlertRule(r.Context(), queries.CreateAlertRuleParams{
		TeamID: svc.TeamID, ServiceID: svc.ID, MetricType: *req.MetricType, Operator: *req.Operator,
		Threshold: *req.Threshold, DurationMinutes: *req.DurationMinutes, Severity: *req.Severity,
		Enabled: req.Enabled == nil || *req.Enabled, MaxRules: maxAlertRules,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return &apiError{Status: http.StatusConflict, ErrorKey: "alert_rule_limit",
			Message: fmt.Sprintf("A service has at most %d alert rules; change or delete one", maxAlertRules)}
	}
	if err != nil {
		return err
	}
	ok(w, http.StatusCreated, "rule", toAlertRuleJSON(rule))
	return nil
}

// alertRule loads the {ruleId} rule of the {id} service.
func (s *Server) alertRule(r *http.Request) (queries.AlertRule, error) {
	svc, err := s.teamService(r)
	if err != nil {
		return queries.AlertRule{}, err
	}
	id, err := uuid.Parse(r.PathValue("ruleId"))
	if err != nil {
		return queries.AlertRule{}, notFound("Alert rule")
	}
	rule, err := s.Queries.GetAlertRule(r.Context(), queries.GetAlertRuleParams{ID: id, ServiceID: svc.ID})
	if errors.Is(err, pgx.ErrNoRows) {
		return rule, notFound("Alert rule")
	}
	return rule, err
}

// updateAlertRule changes a rule's threshold, duration, severity or state.
func (s *Server) updateAlertRule(w http.ResponseWriter, r *http.Request) error {
	rule, err := s.alertRule(r)
	if err != nil {
		return err
	}
	var req alertRuleRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	if req.MetricType != nil || req.Operator != nil {
		return invalid("metricType and operator cannot change; delete the rule and create another")
	}
	if req.Threshold != nil {
		rule.Threshold = *req.Threshold
	}
	if req.DurationMinutes != nil {
		rule.DurationMinutes = *req.DurationMinutes
	}
	if req.Severity != nil {
		rule.Severity = *req.Severity
	}
	if req.Enabled != nil {
		rule.Enabled = *req.Enabled
	}
	if errs := validateAlertRule(rule.MetricType, rule.Operator, rule.Threshold, rule.DurationMinutes, rule.Severity); len(errs) > 0 {
		return invalid(errs...)
	}
	updated, err := s.Queries.UpdateAlertRule(r.Context(), queries.UpdateAlertRuleParams{ID: rule.ID, ServiceID: rule.ServiceID,
		Enabled: rule.Enabled, Threshold: rule.Threshold, DurationMinutes: rule.DurationMinutes, Severity: rule.Severity})
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "rule", toAlertRuleJSON(updated))
	return nil
}

// deleteAlertRule removes a rule and its fired alerts.
func (s *Server) deleteAlertRule(w http.ResponseWriter, r *http.Request) error {
	rule, err := s.alertRule(r)
	if err != nil {
		return err
	}
	if _, err := s.Queries.DeleteAlertRule(r.Context(), queries.DeleteAlertRuleParams{ID: rule.ID, ServiceID: rule.ServiceID}); err != nil {
		return err
	}
	ok(w, http.StatusOK, "deleted", true)
	return nil
}

// firedAlerts answers the service's alerts, newest first.
func (s *Server) firedAlerts(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return invalid("limit must be from 1 to 500")
		}
		limit = n
	}
	alerts, err := s.Queries.ListFiredAlerts(r.Context(), queries.ListFiredAlertsParams{ServiceID: svc.ID, Limit: int32(limit)})
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(alerts))
	for _, a := range alerts {
		alert := map[string]any{"id": a.ID, "ruleId": a.RuleID, "metricType": a.MetricType, "severity": a.Severity,
			"threshold": a.Threshold, "unit": alerting.Unit(a.MetricType), "value": a.Value, "firedAt": a.FiredAt,
			"resolvedAt": a.ResolvedAt, "resolvedValue": nil}
		if a.ResolvedValue.Valid {
			alert["resolvedValue"] = a.ResolvedValue.Float64
		}
		out = append(out, alert)
	}
	ok(w, http.StatusOK, "alerts", out)
	return nil
}

// teamOf checks that {teamId} is a team the caller may act for.
func (s *Server) teamOf(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("teamId"))
	if err != nil {
		return uuid.Nil, notFound("Team")
	}
	if err := teamAccess(callerOf(r), id, routePermission(r)); err != nil {
		return uuid.Nil, err
	}
	if !callerOf(r).key.Platform {
		return id, nil // its own team, which exists
	}
	if _, err := s.Queries.GetTeam(r.Context(), id); errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, notFound("Team") // a platform key may name any team, not one that is not
	} else if err != nil {
		return uuid.Nil, err
	}
	return id, nil
}

// monitoringSettings answers (GET) or changes (PATCH) where the team's
// alert notifications go. Webhook URLs carry credentials: they are kept
// sealed and shown masked; sending the masked value back leaves the URL as
// it is. A generic webhook's signing key is made when the webhook is first
// set and shown in that answer only.
func (s *Server) monitoringSettings(w http.ResponseWriter, r *http.Request) error {
	team, err := s.teamOf(r)
	if err != nil {
		return err
	}
	cur, err := s.Queries.GetMonitoringSettings(r.Context(), team)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if r.Method == http.MethodGet {
		ok(w, http.StatusOK, "settings", settingsJSON(cur, ""))
		return nil
	}
	var req struct {
		ProfileName       *string `json:"profileName"`
		DiscordWebhookURL *string `json:"discordWebhookUrl"`
		GenericWebhookURL *string `json:"genericWebhookUrl"`
	}
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	unavailable := &apiError{Status: http.StatusServiceUnavailable, ErrorKey: "secrets_unavailable",
		Message: "This server cannot keep webhook credentials (SECRETS_KEY)"}
	var hooks alerting.Webhooks
	if cur.SealedWebhooks != nil {
		if err := s.Jobs.Sealer.Open(team, cur.SealedWebhooks, &hooks); err != nil {
			s.logger(r).Error("team's webhooks cannot be opened", "team_id", team, "err", err)
			return unavailable
		}
	}
	next := cur
	var errs []string
	if req.ProfileName != nil {
		if len(*req.ProfileName) > 100 {
			errs = append(errs, "profileName must be at most 100 characters")
		}
		next.ProfileName = *req.ProfileName
	}
	for _, f := range []struct {
		name string
		v    *string
		url  *string
		hint *string
	}{{"discordWebhookUrl", req.DiscordWebhookURL, &hooks.Discord, &next.DiscordWebhookHint},
		{"genericWebhookUrl", req.GenericWebhookURL, &hooks.Generic, &next.GenericWebhookHint}} {
		if f.v == nil || (*f.v != "" && *f.v == *f.hint) {
			continue
		}
		if *f.v != "" {
			if msg := s.Webhooks.CheckURL(r.Context(), *f.v); msg != "" {
				errs = append(errs, f.name+" "+msg)
			}
		}
		*f.url, *f.hint = *f.v, maskURL(*f.v)
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	var sealedHooks []byte
	if hooks != (alerting.Webhooks{}) {
		if sealedHooks, err = s.Jobs.Sealer.Seal(team, hooks); err != nil {
			return unavailable
		}
	}
	var key string
	var sealedKey []byte
	if hooks.Generic != "" && cur.SealedSigningKey == nil {
		key = rand.Text() + rand.Text()
		if sealedKey, err = s.Jobs.Sealer.Seal(team, key); err != nil {
			return unavailable
		}
	}
	saved, err := s.Queries.SaveMonitoringSettings(r.Context(), queries.SaveMonitoringSettingsParams{
		TeamID: team, ProfileName: next.ProfileName, SealedWebhooks: sealedHooks,
		DiscordWebhookHint: next.DiscordWebhookHint, GenericWebhookHint: next.GenericWebhookHint, SealedSigningKey: sealedKey,
	})
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "settings", settingsJSON(saved, key))
	return nil
}

func settingsJSON(m queries.MonitoringSetting, newKey string) map[string]any {
	out := map[string]any{"profileName": m.ProfileName, "discordWebhookUrl": m.DiscordWebhookHint,
		"genericWebhookUrl": m.GenericWebhookHint, "signed": m.SealedSigningKey != nil}
	if newKey != "" {
		out["signingKey"] = newKey // shown once
	}
	return out
}

// maskURL shows enough of a webhook URL to recognise it: its host and the
// last four characters.
func maskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "…"
	}
	rest := u.RequestURI()
	if len(rest) > 4 {
		rest = rest[len(rest)-4:]
	}
	return u.Scheme + "://" + u.Host + "/…" + rest
}

// metricRanges are the spans GET …/metrics answers, with the width of the
// points it averages the samples into.
var metricRanges = map[string][2]time.Duration{
	"hour": {time.Hour, time.Minute},
	"day":  {24 * time.Hour, 5 * time.Minute},
	"week": {7 * 24 * time.Hour, 30 * time.Minute},
}

// serviceMetrics answers the usage samples the alert evaluator collected,
// averaged into points for charts; `metric` picks one series.
func (s *Server) serviceMetrics(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	rng := cmp.Or(r.URL.Query().Get("range"), "hour")
	span, known := metricRanges[rng]
	metric := r.URL.Query().Get("metric")
	var errs []string
	if !known {
		errs = append(errs, oneOf("range", slices.Sorted(maps.Keys(metricRanges))))
	}
	if metric != "" && !slices.Contains(alertMetrics, metric) {
		errs = append(errs, oneOf("metric", alertMetrics))
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	now := s.now()
	rows, err := s.Queries.ServiceSamples(r.Context(), queries.ServiceSamplesParams{ServiceID: svc.ID, Since: now.Add(-span[0])})
	if err != nil {
		return err
	}
	series := alertMetrics
	if metric != "" {
		series = []string{metric}
	}
	points := []map[string]any{}
	for i := 0; i < len(rows); {
		bucket := rows[i].At.Truncate(span[1])
		sums := make(map[string]float64, len(series))
		n := 0
		for ; i < len(rows) && rows[i].At.Truncate(span[1]).Equal(bucket); i++ {
			smp := alerting.Sample{Online: rows[i].Online, CPU: float64(rows[i].Cpu), Memory: float64(rows[i].Memory),
				Disk: float64(rows[i].Disk), NetworkIn: float64(rows[i].NetworkIn), NetworkOut: float64(rows[i].NetworkOut)}
			for _, m := range series {
				sums[m] += smp.Value(m)
			}
			n++
		}
		p := map[string]any{"time": bucket.UTC()}
		for _, m := range series {
			p[m] = math.Round(sums[m]/float64(n)*100) / 100 // two decimals; the metric as ?metric= and metricType name it
		}
		points = append(points, p)
	}
	units := map[string]string{}
	for _, m := range series {
		units[m] = alerting.Unit(m)
	}
	ok(w, http.StatusOK, "metrics", map[string]any{"range": rng, "intervalSeconds": int(span[1].Seconds()),
		"units": units, "points": points})
	return nil
}

// deleteServiceMetrics removes the service's collected samples.
func (s *Server) deleteServiceMetrics(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	n, err := s.Queries.DeleteServiceSamples(r.Context(), svc.ID)
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "deleted", n)
	return nil
}
