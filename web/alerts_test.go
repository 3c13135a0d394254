package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hostfleet/provisiond/queries"
)

func TestAlertRulesCRUD(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	path := "/api/services/" + svc.ID.String() + "/alert-rules"
	res := e.do("POST", path, e.key, `{"metricType":"cpu","operator":"gt","threshold":90,"durationMinutes":5,"severity":"warning"}`)
	res.check(t, http.StatusCreated, "")
	rule := res.body["rule"].(map[string]any)
	if rule["enabled"] != true || rule["threshold"] != 90.0 {
		t.Errorf("created rule %v", rule)
	}
	rulePath := path + "/" + rule["id"].(string)
	res = e.do("PATCH", rulePath, e.key, `{"threshold":95,"enabled":false}`)
	res.check(t, http.StatusOK, "")
	if r := res.body["rule"].(map[string]any); r["threshold"] != 95.0 || r["enabled"] != false {
		t.Errorf("patched rule %v", r)
	}
	res = e.do("GET", path, e.key, "")
	res.check(t, http.StatusOK, "")
	if n := len(res.body["rules"].([]any)); n != 1 {
		t.Errorf("%d rules listed, want 1", n)
	}
	e.do("DELETE", rulePath, e.key, "").check(t, http.StatusOK, "")
	e.do("DELETE", rulePath, e.key, "").check(t, http.StatusNotFound, "Alert rule not found")
	res = e.do("GET", "/api/services/"+svc.ID.String()+"/fired-alerts?limit=10", e.key, "")
	res.check(t, http.StatusOK, "")
}

func TestAServiceHasAtMost25AlertRules(t *testing.T) {
	e := newEnv(t)
	path := "/api/services/" + e.newService(e.team.ID).ID.String() + "/alert-rules"
	rule := `{"metricType":"cpu","operator":"gt","threshold":90,"durationMinutes":5,"severity":"warning"}`
	for range 25 {
		e.do("POST", path, e.key, rule).check(t, http.StatusCreated, "")
	}
	res := e.do("POST", path, e.key, rule)
	if res.status != http.StatusConflict || res.body["errorKey"] != "alert_rule_limit" {
		t.Errorf("the 26th rule: %d %s, want 409 alert_rule_limit", res.status, res.raw)
	}
}

func TestAlertRuleValidation(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	other := e.newService(e.newTeam("other").ID)
	tests := []struct {
		name, path, body, want string
		status                 int
	}{
		{"percentage over 100", svc.ID.String(), `{"metricType":"memory","operator":"gte","threshold":120,"durationMinutes":5,"severity":"critical"}`,
			"threshold is a percentage for memory: from 0 to 100", 400},
		{"unknown metric", svc.ID.String(), `{"metricType":"temperature","operator":"gt","threshold":1,"durationMinutes":5,"severity":"info"}`,
			"metricType must be one of: cpu, memory, disk, network_in, network_out, offline", 400},
		{"missing fields", svc.ID.String(), `{"metricType":"cpu"}`, "durationMinutes is required", 400},
		{"duration out of range", svc.ID.String(), `{"metricType":"offline","operator":"gte","threshold":1,"durationMinutes":0,"severity":"info"}`,
			"durationMinutes must be from 1 to 1440", 400},
		{"another team's service", other.ID.String(), `{"metricType":"cpu","operator":"gt","threshold":1,"durationMinutes":5,"severity":"info"}`,
			"", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("POST", "/api/services/"+tt.path+"/alert-rules", e.key, tt.body)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.raw)
			}
			if tt.want != "" && !strings.Contains(res.raw, tt.want) {
				t.Errorf("answer %s, want it to say %q", res.raw, tt.want)
			}
		})
	}
}

func TestMonitoringSettingsRefuseInternalWebhooks(t *testing.T) {
	e := newEnv(t)
	path := "/api/teams/" + e.team.ID.String() + "/monitoring-settings"
	for _, url := range []string{"https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest", "http://93.184.215.14/hook", "https://[::1]/x"} {
		res := e.do("PATCH", path, e.key, `{"genericWebhookUrl":"`+url+`"}`)
		if res.status != http.StatusBadRequest {
			t.Errorf("webhook %s: %d, want 400", url, res.status)
		}
	}
	res := e.do("PATCH", path, e.key, `{"profileName":"ops","genericWebhookUrl":"https://93.184.215.14/hook"}`)
	res.check(t, http.StatusOK, "")
	settings := res.body["settings"].(map[string]any)
	if key, _ := settings["signingKey"].(string); len(key) < 32 {
		t.Errorf("first webhook: signing key %v, want one shown", settings["signingKey"])
	}
	res = e.do("GET", path, e.key, "")
	if s := res.body["settings"].(map[string]any); s["signingKey"] != nil || s["signed"] != true || s["profileName"] != "ops" {
		t.Errorf("settings read back: %v; want signed, the key not shown again", s)
	}
	other := e.newTeam("other")
	e.do("GET", "/api/teams/"+other.ID.String()+"/monitoring-settings", e.key, "").check(t, http.StatusNotFound, "")
}

func TestServiceMetricsValidation(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	other := e.newService(e.newTeam("other").ID)
	tests := []struct {
		name, path, query, want string
		status                  int
	}{
		{"no samples yet", svc.ID.String(), "?range=day&metric=cpu", `"points":[]`, 200},
		{"unknown range", svc.ID.String(), "?range=year", "range must be one of: day, hour, week", 400},
		{"unknown metric", svc.ID.String(), "?metric=temperature", "metric must be one of", 400},
		{"another team's service", other.ID.String(), "", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("GET", "/api/services/"+tt.path+"/metrics"+tt.query, e.key, "")
			if res.status != tt.status {
				t.Fatalf("status %d, want %d: %s", res.status, tt.status, res.raw)
			}
			if tt.want != "" && !strings.Contains(res.raw, tt.want) {
				t.Errorf("answer %s, want it to say %q", res.raw, tt.want)
			}
		})
	}
}

func TestMonitoringSettingsKeepWebhookURLsSealed(t *testing.T) {
	e := newEnv(t)
	path := "/api/teams/" + e.team.ID.String() + "/monitoring-settings"
	const hook = "https://93.184.215.14/api/webhooks/123/s3cr3t-token"
	res := e.do("PATCH", path, e.key, `{"discordWebhookUrl":"`+hook+`"}`)
	res.check(t, http.StatusOK, "")
	shown := res.body["settings"].(map[string]any)["discordWebhookUrl"].(string)
	if strings.Contains(shown, "s3cr3t") || !strings.HasPrefix(shown, "https://93.184.215.14/") {
		t.Errorf("shown %q: want the URL masked", shown)
	}
	// Sending the masked value back (a form saved as it was) keeps the URL.
	e.do("PATCH", path, e.key, `{"profileName":"ops","discordWebhookUrl":"`+shown+`"}`).check(t, http.StatusOK, "")
	stored, err := e.q.GetMonitoringSettings(t.Context(), e.team.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.SealedWebhooks) == 0 || strings.Contains(string(stored.SealedWebhooks), "s3cr3t") || stored.DiscordWebhookHint != shown {
		t.Errorf("stored %q (hint %q): want the URL sealed and the same hint", stored.SealedWebhooks, stored.DiscordWebhookHint)
	}
}

func TestMonitoringSettingsThatCannotBeOpenedAreUnavailable(t *testing.T) {
	e := newEnv(t)
	// Sealed with another SECRETS_KEY, or damaged.
	if _, err := e.q.SaveMonitoringSettings(t.Context(), queries.SaveMonitoringSettingsParams{
		TeamID: e.team.ID, SealedWebhooks: []byte("not sealed by this server"), DiscordWebhookHint: "https://93.184.215.14/…oken",
	}); err != nil {
		t.Fatal(err)
	}
	path := "/api/teams/" + e.team.ID.String() + "/monitoring-settings"
	e.do("PATCH", path, e.key, `{"profileName":"ops"}`).check(t, http.StatusServiceUnavailable, "This server cannot keep webhook credentials (SECRETS_KEY)")
}
