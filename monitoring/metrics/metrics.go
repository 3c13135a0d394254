// Package metrics defines the fleet's Prometheus metrics. One *Metrics is
// made per process and handed to the API, the workers and the adapters; there
// are no package-level collectors.
package metrics

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// Metrics holds every collector the fleet exports.
type Metrics struct {
	Registry *prometheus.Registry

	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	jobsStarted   *prometheus.CounterVec
	jobsFinished  *prometheus.CounterVec
	jobDuration   *prometheus.HistogramVec
	providerCalls *prometheus.CounterVec
	providerTime  *prometheus.HistogramVec

	consoleUpstreams  prometheus.Gauge
	consoleViewers    prometheus.Gauge
	consoleRelayed    prometheus.Counter
	consoleDropped    prometheus.Counter
	consoleReconnects prometheus.Counter

	alertRounds      *prometheus.CounterVec
	alertBatches     *prometheus.CounterVec
	alertCollect     *prometheus.HistogramVec
	alertEvaluate    prometheus.Histogram
	alertLag         prometheus.Histogram
	alertLastEval    prometheus.Gauge
	alertRules       prometheus.Counter
	alertTransitions *prometheus.CounterVec
	notifications    *prometheus.CounterVec

	sweeps    *prometheus.CounterVec
	lastSweep prometheus.Gauge
	swept     *prometheus.CounterVec
	resumeLag *prometheus.HistogramVec
	drift     *prometheus.GaugeVec
}

// New registers the fleet's collectors, plus the Go runtime and process
// collectors, on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_http_requests_total",
			Help: "API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisiond_http_request_duration_seconds",
			Help:    "API request latency by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method"}),
		jobsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_jobs_started_total",
			Help: "Job attempts started by kind.",
		}, []string{"kind"}),
		jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_jobs_finished_total",
			Help: "Job attempts finished by kind and outcome (succeeded, retrying, failed, cancelled, interrupted).",
		}, []string{"kind", "outcome"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisiond_job_attempt_duration_seconds",
			Help:    "Duration of one job attempt by kind and outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"kind", "outcome"}),
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_provider_calls_total",
			Help: "Calls to providers by provider, operation and outcome (ok, transient, permanent, canceled).",
		}, []string{"provider", "operation", "outcome"}),
		providerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisiond_provider_call_duration_seconds",
			Help:    "Latency of provider calls by provider and operation.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "operation"}),
		consoleUpstreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_console_upstream_connections",
			Help: "Open websocket connections to Wings consoles.",
		}),
		consoleViewers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_console_viewers",
			Help: "Viewers of game server consoles.",
		}),
		consoleRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisiond_console_messages_relayed_total",
			Help: "Console events delivered to viewers.",
		}),
		consoleDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisiond_console_slow_viewers_dropped_total",
			Help: "Viewers dropped for falling too far behind.",
		}),
		consoleReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisiond_console_reconnects_total",
			Help: "Wings console connections re-established after a drop.",
		}),
		alertRounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_alert_rounds_total",
			Help: "Monitoring rounds (splitting the services into collection batches) by outcome (ok, error).",
		}, []string{"outcome"}),
		alertBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_alert_batches_total",
			Help: "Collection and evaluation batches by provider and outcome (ok, error).",
		}, []string{"provider", "outcome"}),
		alertCollect: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisiond_alert_collection_duration_seconds",
			Help:    "Time to collect one batch's usage from its provider node.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider"}),
		alertEvaluate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "provisiond_alert_evaluation_duration_seconds",
			Help:    "Time to evaluate one batch's alert rules.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		alertLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "provisiond_alert_evaluation_lag_seconds",
			Help:    "Time from a round's start to the end of one of its batches' evaluation.",
			Buckets: []float64{.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600},
		}),
		alertLastEval: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_alert_last_evaluation_timestamp_seconds",
			Help: "When this process last finished evaluating a batch of alert rules without error.",
		}),
		alertRules: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisiond_alert_rules_evaluated_total",
			Help: "Alert rules evaluated.",
		}),
		alertTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_alerts_total",
			Help: "Customer alerts by event (firing, resolved).",
		}, []string{"event"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_alert_notifications_total",
			Help: "Alert notification deliveries by channel (discord, webhook) and outcome (ok, transient, permanent, canceled).",
		}, []string{"channel", "outcome"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_scheduler_sweeps_total",
			Help: "Scheduler sweeps by outcome (ok, error).",
		}, []string{"outcome"}),
		lastSweep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_scheduler_last_sweep_timestamp_seconds",
			Help: "When the scheduler last finished a sweep without error.",
		}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_scheduler_repairs_total",
			Help: "What sweeps repaired: jobs enqueued again (enqueued), jobs put back after their task was lost (resumed), jobs failed, terminations put back.",
		}, []string{"action"}),
		resumeLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisiond_job_resume_lag_seconds",
			Help:    "For a job put back after its task was lost (Redis lost its data), how long it had not moved: at most the sweep grace plus the sweep interval once Redis is back.",
			Buckets: []float64{30, 60, 120, 180, 300, 600, 1800, 3600},
		}, []string{"kind"}),
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "provisiond_drift_services",
			Help: "Services whose provider differed from the database at the last reconciliation round, by kind (missing, foreign, power, plan, rescue, locked; orphan counts VMs of ours no live service owns).",
		}, []string{"kind"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.httpRequests, m.httpDuration,
		m.jobsStarted, m.jobsFinished, m.jobDuration,
		m.providerCalls, m.providerTime,
		m.consoleUpstreams, m.consoleViewers, m.consoleRelayed, m.consoleDropped, m.consoleReconnects,
		m.sweeps, m.lastSweep, m.swept, m.resumeLag, m.drift,
		m.alertRounds, m.alertBatches, m.alertCollect, m.alertEvaluate, m.alertLag, m.alertLastEval,
		m.alertRules, m.alertTransitions, m.notifications,
	)
	return m
}

// ObserveAlertRound records one monitoring round.
func (m *Metrics) ObserveAlertRound(_ int, err error) {
	m.alertRounds.WithLabelValues(okOrError(err)).Inc()
}

// ObserveAlertBatch records one batch's collection and evaluation.
func (m *Metrics) ObserveAlertBatch(provider string, rules, fired, resolved int, collect, evaluate, lag time.Duration, err error) {
	m.alertBatches.WithLabelValues(provider, okOrError(err)).Inc()
	m.alertCollect.WithLabelValues(provider).Observe(collect.Seconds())
	m.alertEvaluate.Observe(evaluate.Seconds())
	m.alertRules.Add(float64(rules))
	m.alertTransitions.WithLabelValues("firing").Add(float64(fired))
	m.alertTransitions.WithLabelValues("resolved").Add(float64(resolved))
	if err == nil {
		m.alertLag.Observe(lag.Seconds())
		m.alertLastEval.SetToCurrentTime()
	}
}

// ObserveNotification records one delivery of an alert notification.
func (m *Metrics) ObserveNotification(channel string, err error) {
	m.notifications.WithLabelValues(channel, outcome(err)).Inc()
}

func okOrError(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// ObserveHTTP records one API request.
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// JobStarted records the start of a job attempt.
func (m *Metrics) JobStarted(kind string) { m.jobsStarted.WithLabelValues(kind).Inc() }

// JobFinished records the end of a job attempt.
func (m *Metrics) JobFinished(kind, outcome string, d time.Duration) {
	m.jobsFinished.WithLabelValues(kind, outcome).Inc()
	m.jobDuration.WithLabelValues(kind, outcome).Observe(d.Seconds())
}

// ObserveProviderCall records one call to a provider. It is safe to call on a
// nil *Metrics so that adapters can be used without metrics in tools.
func (m *Metrics) ObserveProviderCall(provider, op string, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.providerCalls.WithLabelValues(provider, op, outcome(err)).Inc()
	m.providerTime.WithLabelValues(provider, op).Observe(d.Seconds())
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case failure.IsPermanent(err):
		return "permanent"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "transient"
	}
}

// UpstreamOpened, UpstreamClosed, ViewerJoined, ViewerLeft, Relayed,
// SlowViewerDropped and Reconnected make Metrics the game console hub's
// observer.
func (m *Metrics) UpstreamOpened() { m.consoleUpstreams.Inc() }

// UpstreamClosed records a Wings console connection closed.
func (m *Metrics) UpstreamClosed() { m.consoleUpstreams.Dec() }

// ViewerJoined records a new console viewer.
func (m *Metrics) ViewerJoined() { m.consoleViewers.Inc() }

// ViewerLeft records a console viewer gone.
func (m *Metrics) ViewerLeft() { m.consoleViewers.Dec() }

// Relayed records n console events delivered.
func (m *Metrics) Relayed(n int) { m.consoleRelayed.Add(float64(n)) }

// SlowViewerDropped records a viewer dropped for lagging.
func (m *Metrics) SlowViewerDropped() { m.consoleDropped.Inc() }

// Reconnected records a Wings console connection re-established.
func (m *Metrics) Reconnected() { m.consoleReconnects.Inc() }

// ObserveDrift records what a reconciliation round found, by drift kind.
func (m *Metrics) ObserveDrift(counts map[string]int) {
	for kind, n := range counts {
		m.drift.WithLabelValues(kind).Set(float64(n))
	}
}

// ObserveResume records a job put back after its task was lost, and how
// long it had not moved.
func (m *Metrics) ObserveResume(kind string, lost time.Duration) {
	m.resumeLag.WithLabelValues(kind).Observe(lost.Seconds())
}

// ObserveSweep records one scheduler sweep and what it repaired.
func (m *Metrics) ObserveSweep(enqueued, resumed, failed, terminations int, err error) {
	m.sweeps.WithLabelValues(okOrError(err)).Inc()
	if err != nil {
		return
	}
	m.lastSweep.SetToCurrentTime()
	m.swept.WithLabelValues("enqueued").Add(float64(enqueued))
	m.swept.WithLabelValues("resumed").Add(float64(resumed))
	m.swept.WithLabelValues("failed").Add(float64(failed))
	m.swept.WithLabelValues("termination").Add(float64(terminations))
}
