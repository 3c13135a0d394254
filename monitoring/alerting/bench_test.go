package alerting

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/jobs/jobtest"
)

// countingDB counts the statements sent to PostgreSQL, inside
// transactions too.
type countingDB struct {
	*pgxpool.Pool
	n *atomic.Int64
}

func (c countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n.Add(1)
	return c.Pool.Exec(ctx, sql, args...)
}

func (c countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.Pool.Query(ctx, sql, args...)
}

func (c countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n.Add(1)
	return c.Pool.QueryRow(ctx, sql, args...)
}

func (c countingDB) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := c.Pool.Begin(ctx)
	return countingTx{tx, c.n}, err
}

type countingTx struct {
	pgx.Tx
	n *atomic.Int64
}

func (c countingTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n.Add(1)
	return c.Tx.Exec(ctx, sql, args...)
}

func (c countingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.Tx.Query(ctx, sql, args...)
}

// fleet fills a database with services, rules per service and three
// minutes of samples, values drawn so that about a tenth of the rules
// breach, and returns the services in their batches.
func fleet(b *testing.B, pool *pgxpool.Pool, services, rulesPerService, batch int, now time.Time) [][]uuid.UUID {
	ctx := context.Background()
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO teams (name) VALUES ('bench')`, nil},
		{`INSERT INTO services (team_id, name, provider, provider_ref, plan)
		  SELECT (SELECT id FROM teams), 'svc-' || i, 'proxmox', jsonb_build_object('node', 'pve' || (i % 20), 'vmid', 1000 + i), '{}'
		  FROM generate_series(1, $1::int) AS i`, []any{services}},
		{`INSERT INTO alert_rules (team_id, service_id, metric_type, operator, threshold, duration_minutes, severity)
		  SELECT s.team_id, s.id, (ARRAY['cpu','memory','disk','network_in','network_out','offline'])[1 + (r % 6)],
		         CASE WHEN r % 6 = 5 THEN 'gte' ELSE 'gt' END, CASE WHEN r % 6 = 5 THEN 1 ELSE 90 END,
		         1 + (r % 3), 'warning'
		  FROM services s, generate_series(0, $1::int - 1) AS r`, []any{rulesPerService}},
		{`INSERT INTO service_samples (service_id, at, online, cpu, memory, disk, network_in, network_out, net_in_bytes, net_out_bytes)
		  SELECT s.id, $1::timestamptz - m * interval '1 minute', random() > 0.02,
		         random() * 100, random() * 100, random() * 100, random() * 100, random() * 100, 0, 0
		  FROM services s, generate_series(0, 2) AS m`, []any{now}},
		{`VACUUM ANALYZE`, nil}, // so that autovacuum does not run during the rounds
		{`CHECKPOINT`, nil},
	} {
		if _, err := pool.Exec(ctx, st.sql, st.args...); err != nil {
			b.Fatalf("%s: %v", st.sql, err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT id FROM services ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		b.Fatal(err)
	}
	return slices.Collect(slices.Chunk(ids, batch))
}

// BenchmarkEvaluationRound evaluates every rule of a fleet once per
// iteration, batch by batch as the rounds' tasks do, and reports the time
// of one round, rules per second, and statements per round. The first
// round writes every breach start; later rounds over the same samples
// write nothing. Collection from the providers is left out.
func BenchmarkEvaluationRound(b *testing.B) {
	for _, tc := range []struct {
		name                         string
		services, rulesPerSvc, batch int
	}{
		{"services=20000/rules=20000/batch=200", 20000, 1, 200},
		{"services=20000/rules=100000/batch=200", 20000, 5, 200},
		{"services=20000/rules=100000/batch=2000", 20000, 5, 2000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pool, _ := jobtest.DB(b)
			now := time.Now().UTC().Truncate(time.Minute)
			batches := fleet(b, pool, tc.services, tc.rulesPerSvc, tc.batch, now)
			var n atomic.Int64
			m := &Monitor{DB: countingDB{pool, &n}, Log: slog.New(slog.DiscardHandler)}
			ctx := context.Background()
			round := func() (int, time.Duration) {
				start := time.Now()
				rules := 0
				for _, ids := range batches {
					res, err := m.Evaluate(ctx, ids, now)
					if err != nil {
						b.Fatal(err)
					}
					rules += res.Rules
				}
				return rules, time.Since(start)
			}
			n.Store(0)
			_, first := round()
			firstQueries := n.Load()
			b.ResetTimer()
			n.Store(0)
			var rules int
			for range b.N {
				rules, _ = round()
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(per.Seconds(), "s/round")
			b.ReportMetric(float64(rules)/per.Seconds(), "rules/s")
			b.ReportMetric(float64(n.Load())/float64(b.N), "queries/round")
			b.ReportMetric(first.Seconds(), "s/first-round")
			b.ReportMetric(float64(firstQueries), "queries/first-round")
		})
	}
}
