// Command loadgen measures the API's job-creating endpoint against a
// baseline of bare asynq.Client.Enqueue on the same Redis, in one run, at the
// same concurrency, and prints requests per second, p50 and p99 for both and
// their ratio. `make bench` runs it against a `provisiond api` it starts.
//
//	loadgen -api http://127.0.0.1:18080 [-duration 10s] [-concurrency 32]
//	loadgen -hold 10000 [-clone 30s] [-worker .run/provisiond]
//
// With -hold it measures instead how many long jobs one worker process
// carries at once (see hold).
//
// It reads DATABASE_URL and REDIS_ADDR, and creates its own team, key and
// services (a job holds its service until it ends and no worker runs here,
// so every request gets a service of its own).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/sql/migrations"
	"github.com/hostfleet/provisiond/web/apikey"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:18080", "base URL of a running provisiond api")
	duration := flag.Duration("duration", 10*time.Second, "how long each phase runs")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before each phase")
	concurrency := flag.Int("concurrency", 32, "concurrent clients")
	holdJobs := flag.Int("hold", 0, "instead: how many provision jobs one worker process must hold at once")
	clone := flag.Duration("clone", 30*time.Second, "with -hold: how long a simulated clone takes")
	worker := flag.String("worker", ".run/provisiond", "with -hold: the provisiond binary to run as the worker")
	flag.Parse()
	var err error
	if *holdJobs > 0 {
		err = hold(context.Background(), *worker, *holdJobs, *clone)
	} else {
		err = run(context.Background(), *api, *duration, *warmup, *concurrency)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// result is one phase's measurements.
type result struct {
	name      string
	requests  int
	errors    int
	elapsed   time.Duration
	latencies []time.Duration
}

func (r result) rate() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(float64(len(r.latencies))*p))]
}

func (r result) String() string {
	return fmt.Sprintf("%-34s %8.0f req/s   p50 %7.2f ms   p99 %7.2f ms   (%d requests, %d errors)",
		r.name, r.rate(), ms(r.percentile(0.50)), ms(r.percentile(0.99)), r.requests, r.errors)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// load runs op from n goroutines for d and collects every latency.
func load(name string, n int, d time.Duration, op func(worker, i int) error) result {
	var (
		mu     sync.Mutex
		all    []time.Duration
		errs   atomic.Int64
		wg     sync.WaitGroup
		cutoff = time.Now().Add(d)
	)
	start := time.Now()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(cutoff); i++ {
				t0 := time.Now()
				if err := op(w, i); err != nil {
					if errs.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "%s: first error: %v\n", name, err)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(all)
	return result{name: name, requests: len(all), errors: int(errs.Load()), elapsed: time.Since(start), latencies: all}
}

func run(ctx context.Context, api string, duration, warmup time.Duration, n int) error {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	q := queries.New(pool)
	redisOpt := asynq.RedisClientOpt{Addr: os.Getenv("REDIS_ADDR")}
	client := asynq.NewClient(redisOpt)
	defer client.Close()

	// The baseline enqueues what the API enqueues: a power task with a task id.
	payload, _ := json.Marshal(jobs.PowerArgs{ServiceID: uuid.New(), Action: "restart"})
	enqueue := func(int, int) error {
		_, err := client.EnqueueContext(ctx, asynq.NewTask("bench.baseline", payload),
			asynq.TaskID(uuid.NewString()), asynq.Queue("bench"), asynq.MaxRetry(9), asynq.Timeout(10*time.Minute))
		return err
	}
	load("warm-up", n, warmup, enqueue)
	base := load("baseline asynq.Client.Enqueue", n, duration, enqueue)
	fmt.Println(base)

	// Enough services that no request meets a service held by an earlier job,
	// unless the API outruns 60% of the baseline (then it says so).
	services := int(base.rate()*(duration+warmup).Seconds()*0.6) + 10_000
	team, key, ids, err := seed(ctx, pool, q, services)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "seeded team %s with %d services\n", team, len(ids))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n * 2}, Timeout: 10 * time.Second}
	var next atomic.Int64
	post := func(int, int) error {
		i := next.Add(1) - 1
		if int(i) >= len(ids) {
			return fmt.Errorf("out of services after %d requests", i)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/services/"+ids[i].String()+"/action",
			bytes.NewReader([]byte(`{"action":"restart"}`)))
		req.Header.Set("x-api-key", key)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d: %s", res.StatusCode, body)
		}
		return nil
	}
	load("warm-up", n, warmup, post)
	apiRes := load("API POST /api/services/{id}/action", n, duration, post)
	fmt.Println(apiRes)

	ratio := apiRes.rate() / base.rate()
	fmt.Printf("\nthroughput ratio API / bare enqueue: %.2f (target >= 0.50: %s)\n", ratio, verdict(ratio >= 0.5))
	fmt.Printf("API p99 at %d clients: %.2f ms (target < 10 ms: %s)\n", n, ms(apiRes.percentile(0.99)), verdict(apiRes.percentile(0.99) < 10*time.Millisecond))
	if apiRes.errors > 0 || base.errors > 0 {
		return fmt.Errorf("%d API errors, %d baseline errors", apiRes.errors, base.errors)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// seed makes a team, a key without a rate limit worth the name, and n
// services, in one statement for the services.
func seed(ctx context.Context, pool *pgxpool.Pool, q *queries.Queries, n int) (string, string, []uuid.UUID, error) {
	team, err := q.CreateTeam(ctx, "bench-"+uuid.NewString()[:8])
	if err != nil {
		return "", "", nil, err
	}
	key, _, err := apikey.Create(ctx, q, apikey.Spec{TeamID: team.ID, Name: "bench", RateLimit: 1 << 30})
	if err != nil {
		return "", "", nil, err
	}
	rows, err := pool.Query(ctx, `
		INSERT INTO services (team_id, name, provider, provider_ref, plan, status)
		SELECT $1, 'bench-' || g, 'proxmox', jsonb_build_object('node', 'pve1', 'vmid', 100 + g), '{}', 'active'
		FROM generate_series(1, $2) AS g
		RETURNING id`, team.ID, n)
	if err != nil {
		return "", "", nil, err
	}
	ids := make([]uuid.UUID, 0, n)
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return "", "", nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return "", "", nil, err
	}
	// Settle the bulk insert now, so that autovacuum and the checkpoint it
	// brings do not run during the measured phase.
	for _, stmt := range []string{"VACUUM ANALYZE services", "CHECKPOINT"} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return "", "", nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return team.Name, key, ids, nil
}
