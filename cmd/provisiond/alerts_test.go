package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/adapters/webhook"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/monitoring/alerting"
	"github.com/hostfleet/provisiond/queries"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// receiver is a webhook endpoint that records what it is sent and fails the
// first deliveries it is told to.
type receiver struct {
	mu       sync.Mutex
	failNext int
	got      []delivery
}

type delivery struct {
	path   string
	header http.Header
	body   []byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.failNext > 0 && r.URL.Path == "/hook" {
		rc.failNext--
		http.Error(w, "receiver down", http.StatusInternalServerError)
		return
	}
	rc.got = append(rc.got, delivery{path: r.URL.Path, header: r.Header.Clone(), body: body})
	w.WriteHeader(http.StatusNoContent)
}

// find returns the deliveries to path of an event.
func (rc *receiver) find(path, event string) []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []delivery
	for _, d := range rc.got {
		if d.path == path && strings.Contains(string(d.body), event) {
			out = append(out, d)
		}
	}
	return out
}

// alertSystem is the fleet with a hand-moved clock, a webhook receiver the
// team's notifications go to, and no scheduler: the test runs each round.
type alertSystem struct {
	*system
	clock      *fakeClock
	rcv        *receiver
	signingKey string
	tasks      *asynq.Client
	inspector  *asynq.Inspector
	start      time.Time
}

func newAlertSystem(t *testing.T) *alertSystem {
	rcv := &receiver{}
	hooks := httptest.NewTLSServer(rcv)
	t.Cleanup(hooks.Close)
	cas := hooks.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	clock := &fakeClock{t: start}
	s := newSystem(t, systemOpts{clock: clock.Now, webhookCAs: cas,
		env: map[string]string{"WEBHOOK_ALLOWED_NETS": "127.0.0.0/8", "ALERT_INTERVAL": "1m"}})
	as := &alertSystem{system: s, clock: clock, rcv: rcv, start: start, tasks: asynq.NewClient(s.app.redis),
		inspector: asynq.NewInspector(s.app.redis)}
	t.Cleanup(func() { as.tasks.Close(); as.inspector.Close() })
	status, body := s.do("PATCH", "/api/teams/"+s.services["web-1"].TeamID.String()+"/monitoring-settings",
		`{"profileName":"ops","genericWebhookUrl":"`+hooks.URL+`/hook","discordWebhookUrl":"`+hooks.URL+`/discord/123/token"}`)
	if status != http.StatusOK {
		t.Fatalf("monitoring settings: %d %v", status, body)
	}
	as.signingKey = body["settings"].(map[string]any)["signingKey"].(string)
	return as
}

// rule creates an alert rule through the API.
func (as *alertSystem) rule(service, body string) string {
	as.t.Helper()
	status, out := as.do("POST", "/api/services/"+as.services[service].ID.String()+"/alert-rules", body)
	if status != http.StatusCreated {
		as.t.Fatalf("create rule: %d %v", status, out)
	}
	return out["rule"].(map[string]any)["id"].(string)
}

// round runs the monitoring round of minute m after the start through the
// queue and waits until the demo VPSs have their samples.
func (as *alertSystem) round(m int) {
	as.t.Helper()
	as.roundOf(m, as.services["web-1"].ID, as.services["db-1"].ID)
}

// roundOf runs the round of minute m and waits for the services' samples,
// which it returns.
func (as *alertSystem) roundOf(m int, services ...uuid.UUID) map[uuid.UUID]queries.ServiceSamplesRow {
	as.t.Helper()
	at := as.start.Add(time.Duration(m) * time.Minute)
	as.clock.Set(at)
	if _, err := as.tasks.Enqueue(alerting.NewRoundTask(at)); err != nil {
		as.t.Fatal(err)
	}
	got := map[uuid.UUID]queries.ServiceSamplesRow{}
	jobtest.Eventually(as.t, 20*time.Second, "the samples of minute "+at.Format("15:04"), func() bool {
		for _, id := range services {
			rows, err := as.q.ServiceSamples(context.Background(), queries.ServiceSamplesParams{ServiceID: id, Since: at})
			if err != nil || len(rows) == 0 {
				return false
			}
			got[id] = rows[0]
		}
		return true
	})
	// Samples are stored before a batch evaluates its rules: wait until
	// the round's batches of these services have ended.
	prefix := fmt.Sprintf("%s:%d:", alerting.TaskCollect, at.Unix())
	jobtest.Eventually(as.t, 20*time.Second, "the services' batches of minute "+at.Format("15:04")+" to end", func() bool {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){as.inspector.ListPendingTasks, as.inspector.ListActiveTasks} {
			tasks, err := list("default")
			if err != nil {
				return false
			}
			for _, task := range tasks {
				if !strings.HasPrefix(task.ID, prefix) {
					continue
				}
				for _, id := range services {
					if strings.Contains(string(task.Payload), id.String()) {
						return false
					}
				}
			}
		}
		return true
	})
	return got
}

// firedAlerts lists the service's alerts through the API.
func (as *alertSystem) firedAlerts(service string) []map[string]any {
	as.t.Helper()
	status, body := as.do("GET", "/api/services/"+as.services[service].ID.String()+"/fired-alerts", "")
	if status != http.StatusOK {
		as.t.Fatalf("fired alerts: %d %v", status, body)
	}
	var out []map[string]any
	for _, a := range body["alerts"].([]any) {
		out = append(out, a.(map[string]any))
	}
	return out
}

func (as *alertSystem) setCPU(service string, cpu float64) {
	vm := as.vm(service)
	as.sim.SetLoad(vm.Node, vm.VMID, sim.Load{CPU: cpu, Memory: 0.5, Disk: 0.2})
}

func TestAlertFiresAfterItsDurationOnceAndResolves(t *testing.T) {
	t.Parallel()
	as := newAlertSystem(t)
	as.rule("web-1", `{"metricType":"cpu","operator":"gt","threshold":80,"durationMinutes":3,"severity":"critical"}`)
	as.setCPU("web-1", 0.95)
	for m := 0; m <= 2; m++ {
		as.round(m)
		if got := as.firedAlerts("web-1"); len(got) != 0 {
			t.Fatalf("minute %d: alerts %v; want none before 3 minutes of breaching samples", m, got)
		}
	}
	as.round(3)
	got := as.firedAlerts("web-1")
	if len(got) != 1 || got[0]["value"].(float64) < 94 || got[0]["resolvedAt"] != nil {
		t.Fatalf("minute 3: alerts %v; want one open alert with the value 95", got)
	}
	as.round(4)
	as.round(5)
	if got := as.firedAlerts("web-1"); len(got) != 1 {
		t.Fatalf("minute 5: %d alerts; want the one alert, fired once", len(got))
	}
	as.setCPU("web-1", 0.10)
	as.round(6)
	got = as.firedAlerts("web-1")
	if len(got) != 1 || got[0]["resolvedAt"] == nil || got[0]["resolvedValue"].(float64) > 11 {
		t.Fatalf("minute 6: alerts %v; want the alert resolved at the value 10", got)
	}
	status, body := as.do("GET", "/api/services/"+as.services["web-1"].ID.String()+"/metrics?range=hour&metric=cpu", "")
	points, _ := body["metrics"].(map[string]any)["points"].([]any)
	if status != http.StatusOK || len(points) != 7 {
		t.Fatalf("metrics: %d, %d points; want 7 (one per round): %v", status, len(points), body)
	}
	metrics := "/api/services/" + as.services["web-1"].ID.String() + "/metrics"
	if status, body := as.do("DELETE", metrics, ""); status != http.StatusOK || body["deleted"] != 7.0 {
		t.Fatalf("delete metrics: %d %v; want the 7 samples deleted", status, body)
	}
	_, body = as.do("GET", metrics, "")
	if points := body["metrics"].(map[string]any)["points"].([]any); len(points) != 0 {
		t.Errorf("after delete: %d points, want none", len(points))
	}
}

func TestUsageIsCollectedFromProxmoxAndPterodactyl(t *testing.T) {
	t.Parallel()
	as := newAlertSystem(t)
	path := as.gameServer()
	game := uuid.MustParse(strings.TrimPrefix(path, "/api/services/"))
	if status, body := as.do("POST", path+"/action", `{"action":"start"}`); status != http.StatusAccepted {
		t.Fatalf("start the game server: %d %v", status, body)
	} else if job := as.waitJob(body["job"].(map[string]any)["id"].(string), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("start the game server: %v", job)
	}
	as.setCPU("web-1", 0.5)
	web, db := as.services["web-1"].ID, as.services["db-1"].ID
	as.roundOf(0, web, db, game)
	got := as.roundOf(1, web, db, game)
	for _, tc := range []struct {
		name   string
		sample queries.ServiceSamplesRow
		online bool
		check  func(queries.ServiceSamplesRow) bool
	}{
		{"running VM", got[web], true, func(s queries.ServiceSamplesRow) bool { return s.Cpu == 50 && s.Memory == 50 && s.Disk == 20 }},
		{"stopped VM", got[db], false, func(s queries.ServiceSamplesRow) bool { return s.Cpu == 0 }},
		{"game server", got[game], true, func(s queries.ServiceSamplesRow) bool { return s.Memory > 0 && s.Memory <= 100 }},
	} {
		if tc.sample.Online != tc.online || !tc.check(tc.sample) {
			t.Errorf("%s: sample %+v", tc.name, tc.sample)
		}
	}

	// A panel that stops answering holds up its own batch only.
	as.ptero.Inject(simkit.Fault{Op: "client.resources", Hang: true})
	as.roundOf(2, web, db)
	rows, err := as.q.ServiceSamples(context.Background(), queries.ServiceSamplesParams{ServiceID: game, Since: as.start.Add(2 * time.Minute)})
	if err != nil || len(rows) != 0 {
		t.Errorf("game server samples %v (%v) while its panel hangs; want none yet", rows, err)
	}

	// A game server deleted at the panel is not running, as a VM gone from
	// its node is.
	as.ptero.ClearFaults()
	svc, err := as.q.GetService(context.Background(), game)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := jobs.PterodactylRef(&svc)
	if err != nil {
		t.Fatal(err)
	}
	if err := as.app.ptero.DeleteServer(context.Background(), ref.ServerID, true); err != nil {
		t.Fatal(err)
	}
	if got := as.roundOf(3, game)[game]; got.Online {
		t.Errorf("deleted game server sample %+v; want it not running", got)
	}
}

func TestGapInSamplesRestartsTheDuration(t *testing.T) {
	t.Parallel()
	as := newAlertSystem(t)
	as.rule("db-1", `{"metricType":"offline","operator":"gte","threshold":1,"durationMinutes":2,"severity":"warning"}`)
	as.round(0)
	as.round(1)
	// No round at minute 2: the collection was missed.
	as.round(3)
	as.round(4)
	if got := as.firedAlerts("db-1"); len(got) != 0 {
		t.Fatalf("minute 4: alerts %v; want none: the gap restarted the duration at minute 3", got)
	}
	as.round(5)
	if got := as.firedAlerts("db-1"); len(got) != 1 {
		t.Fatalf("minute 5: alerts %v; want the stopped VM's offline alert", got)
	}
}

func TestNotificationsAreSignedRetriedAndSentForFiringAndResolving(t *testing.T) {
	t.Parallel()
	as := newAlertSystem(t)
	as.rcv.failNext = 1 // the generic receiver is down for the first delivery
	as.rule("web-1", `{"metricType":"cpu","operator":"gte","threshold":90,"durationMinutes":1,"severity":"critical"}`)
	as.setCPU("web-1", 0.97)
	as.round(0)
	as.round(1)
	as.setCPU("web-1", 0.05)
	as.round(2)

	for _, event := range []string{"firing", "resolved"} {
		var got []delivery
		jobtest.Eventually(t, 20*time.Second, "the "+event+" webhook", func() bool {
			got = as.rcv.find("/hook", `"event":"`+event+`"`)
			return len(got) > 0
		})
		if len(got) != 1 {
			t.Errorf("%s: %d generic deliveries; want 1", event, len(got))
		}
		d := got[0]
		if err := webhook.Verify([]byte(as.signingKey), d.header.Get("X-Provisiond-Signature"), d.body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("%s: signature: %v", event, err)
		}
		var msg struct {
			Event string `json:"event"`
			Alert struct {
				MetricType string  `json:"metricType"`
				Value      float64 `json:"value"`
				Threshold  float64 `json:"threshold"`
			} `json:"alert"`
			Service struct {
				Name string `json:"name"`
			} `json:"service"`
		}
		if err := json.Unmarshal(d.body, &msg); err != nil || msg.Event != event || msg.Alert.MetricType != "cpu" ||
			msg.Alert.Threshold != 90 || msg.Service.Name != "web-1" {
			t.Errorf("%s body %s (%v); want the cpu alert of web-1", event, d.body, err)
		}
		jobtest.Eventually(t, 20*time.Second, "the "+event+" Discord message", func() bool {
			return len(as.rcv.find("/discord/123/token", "embeds")) >= map[string]int{"firing": 1, "resolved": 2}[event]
		})
	}
	if n := len(as.rcv.find("/discord/123/token", "embeds")); n != 2 {
		t.Errorf("%d Discord messages; want 2 (firing and resolved)", n)
	}
	var attempts int
	err := as.db.QueryRow(context.Background(),
		`SELECT attempts FROM jobs WHERE kind = 'alert.notify' AND args->>'channel' = 'webhook' AND args->>'event' = 'firing'`).Scan(&attempts)
	if err != nil || attempts != 2 {
		t.Errorf("firing webhook job: %d attempts (%v); want 2: the failed delivery retried", attempts, err)
	}
}

func TestTerminatedServiceAlertsEnd(t *testing.T) {
	t.Parallel()
	as := newAlertSystem(t)
	as.rule("db-1", `{"metricType":"offline","operator":"gte","threshold":1,"durationMinutes":1,"severity":"warning"}`)
	as.round(0)
	as.round(1)
	if got := as.firedAlerts("db-1"); len(got) != 1 || got[0]["resolvedAt"] != nil {
		t.Fatalf("alerts %v; want the stopped VM's open offline alert", got)
	}
	db := as.services["db-1"].ID
	if err := as.q.SetServiceStatus(context.Background(), queries.SetServiceStatusParams{ID: db, Status: "terminated"}); err != nil {
		t.Fatal(err)
	}
	as.roundOf(2, as.services["web-1"].ID)
	jobtest.Eventually(t, 10*time.Second, "the terminated service's alert to end", func() bool {
		got := as.firedAlerts("db-1")
		return len(got) == 1 && got[0]["resolvedAt"] != nil
	})
}
