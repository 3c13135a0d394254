package metrics_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/monitoring/metrics"
)

// TestRulesAndDashboardNameExportedMetrics checks that every provisiond_
// metric the alerting rules and the Grafana dashboard query is one the
// fleet exports, so that a renamed metric cannot silence an alert.
func TestRulesAndDashboardNameExportedMetrics(t *testing.T) {
	m := metrics.New()
	m.ObserveHTTP("GET /api/ping", "GET", 200, time.Millisecond)
	m.JobStarted("k")
	m.JobFinished("k", "succeeded", time.Second)
	m.ObserveProviderCall("proxmox", "clone", errors.New("x"), time.Second)
	m.ObserveSweep(1, 1, 0, 0, nil)
	m.ObserveResume("k", time.Minute)
	m.ObserveDrift(map[string]int{"missing": 1})
	m.Relayed(1)
	m.SlowViewerDropped()
	m.Reconnected()
	m.ObserveAlertRound(3, nil)
	m.ObserveAlertBatch("proxmox", 10, 1, 0, time.Second, time.Millisecond, 2*time.Second, nil)
	m.ObserveNotification("discord", nil)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}
	name := regexp.MustCompile(`provisiond_[a-z_]+`)
	for _, file := range []string{"../alerts.yml", "../grafana/provisiond.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range name.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if !exported[base] {
				t.Errorf("%s queries %s, which the fleet does not export", file, n)
			}
		}
	}
}
