package alerting_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hostfleet/provisiond/adapters/webhook"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/worktest"
	"github.com/hostfleet/provisiond/monitoring/alerting"
	"github.com/hostfleet/provisiond/queries"
)

// TestNotifierDeliversAFiringToTheTeamsWebhook drives one alert.notify job
// with the harness: the team's webhook receives the firing once.
func TestNotifierDeliversAFiringToTheTeamsWebhook(t *testing.T) {
	ctx := context.Background()
	var (
		mu     sync.Mutex
		bodies []string
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)

	h := worktest.New(t)
	q := queries.New(h.Pool)
	svc := h.Service("proxmox", []byte(`{}`), []byte(`{"node":"pve1","vmid":100}`))
	rule, err := q.CreateAlertRule(ctx, queries.CreateAlertRuleParams{TeamID: h.Team.ID, ServiceID: svc.ID, MetricType: "cpu",
		Operator: "gt", Threshold: 90, DurationMinutes: 5, Severity: "critical", Enabled: true, MaxRules: 25})
	if err != nil {
		t.Fatal(err)
	}
	fired, err := q.FireAlerts(ctx, queries.FireAlertsParams{RuleIds: []uuid.UUID{rule.ID}, Values: []float64{97}, FiredAts: []time.Time{time.Now()}})
	if err != nil || len(fired) != 1 {
		t.Fatalf("fire alert: %v, %d alerts", err, len(fired))
	}
	sealer := h.Workers.Sealer
	hooks, err := sealer.Seal(h.Team.ID, alerting.Webhooks{Generic: receiver.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := sealer.Seal(h.Team.ID, "signing-key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.SaveMonitoringSettings(ctx, queries.SaveMonitoringSettingsParams{TeamID: h.Team.ID, ProfileName: "acme",
		SealedWebhooks: hooks, GenericWebhookHint: "127.0.0.1", SealedSigningKey: key}); err != nil {
		t.Fatal(err)
	}
	guard := &webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	jobs.AddWorker(h.Workers, &alerting.Notifier{Queries: h.Queries, Sealer: sealer,
		Sender: webhook.NewSender(webhook.SenderConfig{Guard: guard, Timeout: 5 * time.Second})})

	job := h.Run(ctx, h.Insert(alerting.NotifyArgs{AlertID: fired[0].ID, Event: alerting.EventFiring, Channel: alerting.ChannelWebhook},
		svc.ID, jobs.Request{}), 3)
	if job.Status != jobs.StatusSucceeded {
		t.Fatalf("job ended %s: %s", job.Status, job.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || !strings.Contains(bodies[0], fired[0].ID.String()) {
		t.Errorf("the receiver got %d deliveries (%q); want one naming alert %s", len(bodies), bodies, fired[0].ID)
	}
}
