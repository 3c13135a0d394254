package alerting

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// Task types of the monitoring rounds. They are plain asynq tasks, not
// jobs: nobody asks for them, and a lost one is made up by the next round.
const (
	TaskRound   = "monitor.round"
	TaskCollect = "monitor.collect"
)

// Config tunes monitoring; zero fields take their defaults.
type Config struct {
	// Interval is the time between rounds; 1 minute by default.
	Interval time.Duration
	// BatchSize bounds the services one collection task covers; 200 by
	// default.
	BatchSize int
	// Retention is how long samples are kept; 7 days by default.
	Retention time.Duration
	// Concurrency bounds the provider calls one batch makes at once, for
	// providers asked one service at a time (Pterodactyl); 8 by default.
	Concurrency int
	// Now is the clock samples are timed by; nil means time.Now.
	Now func() time.Time
}

func (c Config) interval() time.Duration { return cmp.Or(c.Interval, time.Minute) }

// maxGap is the longest time between two samples that is not a gap: one
// missed collection is a gap.
func (c Config) maxGap() time.Duration { return c.interval() * 3 / 2 }

// lookback is how far back an evaluation reads samples.
func (c Config) lookback() time.Duration { return 3 * c.interval() }

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// DB is what the monitor needs of the database: queries, and transactions
// for the writes of one evaluation.
type DB interface {
	queries.DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Observer is told what rounds and batches did, for metrics.
type Observer interface {
	ObserveAlertRound(batches int, err error)
	ObserveAlertBatch(provider string, rules, fired, resolved int, collect, evaluate, lag time.Duration, err error)
}

// Monitor runs the rounds and the batches.
type Monitor struct {
	Config
	DB        DB
	Tasks     *asynq.Client
	Collector *Collector
	Notifier  *Notifier
	Observer  Observer
	Log       *slog.Logger
}

func (m *Monitor) queries() *queries.Queries { return queries.New(m.DB) }

// roundArgs is a round task's payload. An empty payload (the scheduler's)
// means the round of the current interval.
type roundArgs struct {
	At int64 `json:"at,omitempty"`
}

// Batch is the services of one provider node that one task collects.
type Batch struct {
	At       time.Time   `json:"at"`
	Provider string      `json:"provider"`
	Node     string      `json:"node"`
	Services []uuid.UUID `json:"services"`
}

// NewRoundTask returns the task the scheduler enqueues every interval; at
// zero means the round of the interval the task runs in.
func NewRoundTask(at time.Time) *asynq.Task {
	var a roundArgs
	if !at.IsZero() {
		a.At = at.Unix()
	}
	b, _ := json.Marshal(a)
	return asynq.NewTask(TaskRound, b)
}

// HandleRound is the asynq handler of TaskRound. A round that fails is
// logged and counted, not retried: the next one comes within an interval.
func (m *Monitor) HandleRound(ctx context.Context, t *asynq.Task) error {
	var a roundArgs
	if len(t.Payload()) > 0 {
		if err := json.Unmarshal(t.Payload(), &a); err != nil {
			return fmt.Errorf("round payload: %v: %w", err, asynq.SkipRetry)
		}
	}
	at := m.now().Truncate(m.interval())
	if a.At != 0 {
		at = time.Unix(a.At, 0)
	}
	n, err := m.Round(ctx, at)
	if m.Observer != nil {
		m.Observer.ObserveAlertRound(n, err)
	}
	if err != nil {
		m.Log.Error("monitoring round failed", "round", at, "err", err)
	}
	return nil
}

// Round splits the monitored services into batches by provider node and
// enqueues a collection task for each; it returns how many. Task ids are
// derived from the round's time, so a round run twice enqueues nothing
// more. It also drops samples older than the retention and ends the open
// alerts of terminated services.
func (m *Monitor) Round(ctx context.Context, at time.Time) (int, error) {
	q := m.queries()
	svcs, err := q.ListMonitoredServices(ctx)
	if err != nil {
		return 0, fmt.Errorf("list monitored services: %w", err)
	}
	groups := map[[2]string][]uuid.UUID{}
	for _, s := range svcs {
		p, ok := jobs.Capability[jobs.UsageReader](m.Collector.Providers, s.Provider)
		if !ok {
			continue // a provider this fleet reads no usage from
		}
		k := [2]string{s.Provider, p.UsageGroup(&s)}
		groups[k] = append(groups[k], s.ID)
	}
	size := cmp.Or(m.BatchSize, 200)
	keys := slices.SortedFunc(func(yield func([2]string) bool) {
		for k := range groups {
			if !yield(k) {
				return
			}
		}
	}, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	n := 0
	for _, k := range keys {
		for i, ids := range slices.Collect(slices.Chunk(groups[k], size)) {
			b := Batch{At: at, Provider: k[0], Node: k[1], Services: ids}
			payload, _ := json.Marshal(b)
			id := fmt.Sprintf("%s:%d:%s:%s:%d", TaskCollect, at.Unix(), k[0], k[1], i)
			_, err := m.Tasks.EnqueueContext(ctx, asynq.NewTask(TaskCollect, payload), asynq.TaskID(id),
				asynq.MaxRetry(0), asynq.Timeout(m.interval()), asynq.Retention(2*m.interval()))
			if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				return n, fmt.Errorf("enqueue batch %s: %w", id, err)
			}
			n++
		}
	}
	if _, err := q.DeleteOldSamples(ctx, at.Add(-cmp.Or(m.Retention, 7*24*time.Hour))); err != nil {
		return n, fmt.Errorf("delete old samples: %w", err)
	}
	if _, err := q.ResolveAlertsOfTerminatedServices(ctx, at); err != nil {
		return n, fmt.Errorf("resolve alerts of terminated services: %w", err)
	}
	return n, nil
}

// BatchResult counts what one batch did.
type BatchResult struct {
	Samples, Rules, Fired, Resolved, Notifications int
	// Collect and Evaluate are how long each part took; Lag is how long
	// after the round's start the batch ended.
	Collect, Evaluate, Lag time.Duration
}

// HandleCollect is the asynq handler of TaskCollect. A batch that fails is
// logged and counted, not retried: a retry would take its samples late,
// and the next round, within an interval, evaluates the same rules again.
func (m *Monitor) HandleCollect(ctx context.Context, t *asynq.Task) error {
	var b Batch
	if err := json.Unmarshal(t.Payload(), &b); err != nil {
		return fmt.Errorf("batch payload: %v: %w", err, asynq.SkipRetry)
	}
	res, err := m.RunBatch(ctx, b)
	if m.Observer != nil {
		m.Observer.ObserveAlertBatch(b.Provider, res.Rules, res.Fired, res.Resolved, res.Collect, res.Evaluate, res.Lag, err)
	}
	if err != nil {
		m.Log.Error("monitoring batch failed", "provider", b.Provider, "node", b.Node, "services", len(b.Services), "err", err)
	}
	return nil
}

// RunBatch collects the batch's usage, stores it and evaluates the
// batch's rules. Services the provider could not report on are logged;
// the error returned is the evaluation's.
func (m *Monitor) RunBatch(ctx context.Context, b Batch) (BatchResult, error) {
	var res BatchResult
	log := m.Log.With("provider", b.Provider, "node", b.Node, "services", len(b.Services))
	start := time.Now()
	n, err := m.Collector.Collect(ctx, m.queries(), b, m.now())
	res.Samples, res.Collect = n, time.Since(start)
	if err != nil {
		// The batch's rules are still evaluated: alerts that were firing
		// may resolve as their rules get disabled, and notifications
		// waiting are handed over.
		log.Warn("collection failed", "err", err)
	}
	evStart := time.Now()
	ev, evErr := m.Evaluate(ctx, b.Services, m.now())
	res.Rules, res.Fired, res.Resolved, res.Notifications = ev.Rules, ev.Fired, ev.Resolved, ev.Notifications
	res.Evaluate = time.Since(evStart)
	res.Lag = m.now().Sub(b.At)
	if evErr != nil {
		return res, evErr
	}
	if ev.Fired+ev.Resolved > 0 {
		log.Info("alerts changed", "fired", ev.Fired, "resolved", ev.Resolved)
	}
	return res, nil
}

// EvalResult counts what one evaluation did.
type EvalResult struct {
	Rules, Fired, Resolved, Notifications int
}

// Evaluate evaluates every rule of the services on their samples up to
// now, writes what changed, and hands new firings and resolvings to the
// Notifier. It makes the same few queries however many rules there are.
func (m *Monitor) Evaluate(ctx context.Context, services []uuid.UUID, now time.Time) (EvalResult, error) {
	var res EvalResult
	q := m.queries()
	rules, err := q.RulesToEvaluate(ctx, services)
	if err != nil {
		return res, fmt.Errorf("load rules: %w", err)
	}
	if len(rules) > 0 {
		from := now.Add(-m.lookback())
		rows, err := q.SamplesSince(ctx, queries.SamplesSinceParams{Ids: services, Since: from})
		if err != nil {
			return res, fmt.Errorf("load samples: %w", err)
		}
		bySvc := make(map[uuid.UUID][]Sample, len(services))
		for _, r := range rows {
			if r.At.After(now) {
				continue
			}
			bySvc[r.ServiceID] = append(bySvc[r.ServiceID], Sample{At: r.At, Online: r.Online, CPU: float64(r.Cpu),
				Memory: float64(r.Memory), Disk: float64(r.Disk), NetworkIn: float64(r.NetworkIn), NetworkOut: float64(r.NetworkOut)})
		}
		var ch changes
		for _, r := range rules {
			open := r.OpenAlertID.Valid
			if !r.Enabled && !open {
				continue
			}
			res.Rules++
			out := Evaluate(Rule{Metric: r.MetricType, Operator: r.Operator, Threshold: r.Threshold,
				Duration: time.Duration(r.DurationMinutes) * time.Minute, Enabled: r.Enabled,
				BreachSince: r.BreachSince, Open: open}, bySvc[r.ServiceID], from, m.maxGap())
			ch.add(r, out, now)
		}
		if res.Fired, res.Resolved, err = ch.write(ctx, m.DB); err != nil {
			return res, err
		}
	}
	if m.Notifier != nil {
		if res.Notifications, err = m.Notifier.HandOver(ctx, q, services); err != nil {
			return res, err
		}
	}
	return res, nil
}

// changes are the writes one evaluation makes, as arrays for one query
// each.
type changes struct {
	startIDs    []uuid.UUID
	startAts    []time.Time
	clearIDs    []uuid.UUID
	fireIDs     []uuid.UUID
	fireValues  []float64
	fireAts     []time.Time
	resolveIDs  []uuid.UUID
	resolveVals []float64
	resolveAts  []time.Time
}

func (c *changes) add(r queries.RulesToEvaluateRow, out Outcome, now time.Time) {
	if out.Changed {
		if out.BreachSince == nil {
			c.clearIDs = append(c.clearIDs, r.ID)
		} else {
			c.startIDs, c.startAts = append(c.startIDs, r.ID), append(c.startAts, *out.BreachSince)
		}
	}
	at := out.At
	if at.IsZero() {
		at = now
	}
	if out.Fire {
		c.fireIDs, c.fireValues, c.fireAts = append(c.fireIDs, r.ID), append(c.fireValues, out.Value), append(c.fireAts, at)
	}
	if out.Resolve {
		c.resolveIDs, c.resolveVals, c.resolveAts = append(c.resolveIDs, r.OpenAlertID.UUID), append(c.resolveVals, out.Value), append(c.resolveAts, at)
	}
}

// write makes the changes in one transaction.
func (c *changes) write(ctx context.Context, db DB) (fired, resolved int, err error) {
	if len(c.startIDs)+len(c.clearIDs)+len(c.fireIDs)+len(c.resolveIDs) == 0 {
		return 0, 0, nil
	}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// Evaluation state can be derived again from the samples: a crash
		// that loses the last commits is made up by the next round, so
		// the commit need not wait for the disk.
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
		q := queries.New(tx)
		if len(c.startIDs) > 0 {
			if err := q.StartBreaches(ctx, queries.StartBreachesParams{Ids: c.startIDs, Sinces: c.startAts}); err != nil {
				return fmt.Errorf("record breaches: %w", err)
			}
		}
		if len(c.clearIDs) > 0 {
			if err := q.ClearBreaches(ctx, c.clearIDs); err != nil {
				return fmt.Errorf("clear breaches: %w", err)
			}
		}
		if len(c.fireIDs) > 0 {
			rows, err := q.FireAlerts(ctx, queries.FireAlertsParams{RuleIds: c.fireIDs, Values: c.fireValues, FiredAts: c.fireAts})
			if err != nil {
				return fmt.Errorf("fire alerts: %w", err)
			}
			fired = len(rows)
		}
		if len(c.resolveIDs) > 0 {
			rows, err := q.ResolveAlerts(ctx, queries.ResolveAlertsParams{Ids: c.resolveIDs, Values: c.resolveVals, ResolvedAts: c.resolveAts})
			if err != nil {
				return fmt.Errorf("resolve alerts: %w", err)
			}
			resolved = len(rows)
		}
		return nil
	})
	return fired, resolved, err
}
