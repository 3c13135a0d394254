package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/sql/migrations"
)

// hold measures how many long jobs one worker process carries at once: it
// starts `provisiond worker` (the binary at workerBin) against a Proxmox
// simulator whose tasks take clone long, inserts n provision jobs, waits
// until all n clones run at the same time, and reports the worker's
// resident memory and goroutines then.
func hold(ctx context.Context, workerBin string, n int, clone time.Duration) error {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	q := queries.New(pool)

	pve := sim.New(sim.Config{TokenID: "root@pam!bench", TokenSecret: "bench", TaskDuration: clone, Seed: 1})
	defer pve.Close()
	pve.AddVM(sim.VM{Node: "pve1", VMID: 9000, Name: "debian-12-template", Template: true, DiskGB: 10})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: pve, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	metricsAddr := "127.0.0.1:19091"
	worker := exec.CommandContext(ctx, workerBin, "worker")
	worker.Env = append(os.Environ(),
		"PROXMOX_URL=http://"+ln.Addr().String()+"/api2/json", "PROXMOX_TOKEN_ID=root@pam!bench", "PROXMOX_TOKEN_SECRET=bench",
		"PROXMOX_POLL_INTERVAL=5s", "WORKER_CONCURRENCY="+strconv.Itoa(n+64), "METRICS_ADDR="+metricsAddr,
		"LOG_LEVEL=warn", "JOB_RETRY_BASE=1s")
	logFile, err := os.Create(".run/bench-worker.log")
	if err != nil {
		return err
	}
	defer logFile.Close()
	worker.Stdout, worker.Stderr = logFile, logFile
	if err := worker.Start(); err != nil {
		return err
	}
	defer func() { worker.Process.Kill(); worker.Wait() }()

	tasks := asynq.NewClient(asynq.RedisClientOpt{Addr: os.Getenv("REDIS_ADDR")})
	defer tasks.Close()
	jc := jobs.NewClient(q, tasks, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	team, err := q.CreateTeam(ctx, "hold-"+uuid.NewString()[:8])
	if err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `
		INSERT INTO services (team_id, name, provider, plan, status)
		SELECT $1, 'hold-' || g, 'proxmox', '{"cores":1,"memoryMb":512,"diskGb":10}', 'pending'
		FROM generate_series(1, $2) AS g
		RETURNING id`, team.ID, n)
	if err != nil {
		return err
	}
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(ids); i += 16 {
				args := jobs.ProvisionArgs{ServiceID: ids[i], Install: jobs.Install{TemplateID: 9000}}
				if _, _, err := jc.Insert(ctx, args, jobs.Request{TeamID: team.ID, ServiceID: ids[i], RequestedBy: "bench"}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("insert jobs: %w", err)
	}
	fmt.Printf("inserted %d provision jobs in %s\n", n, time.Since(start).Round(time.Millisecond))

	deadline := time.Now().Add(5 * time.Minute)
	cloning := 0
	for time.Now().Before(deadline) {
		if cloning = pve.CountTasks("qmclone", 0); cloning >= n {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if cloning < n {
		return fmt.Errorf("only %d of %d clones started within 5 minutes", cloning, n)
	}
	var held int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM jobs WHERE team_id = $1 AND status = 'running'", team.ID).Scan(&held); err != nil {
		return err
	}
	fmt.Printf("all %d clones started %s after the inserts began; %d jobs running in the worker at once\n",
		n, time.Since(start).Round(time.Millisecond), held)
	rss, err := residentMiB(worker.Process.Pid)
	if err != nil {
		return err
	}
	goroutines, err := gauge("http://"+metricsAddr+"/metrics", "go_goroutines")
	if err != nil {
		return err
	}
	fmt.Printf("worker holding %d jobs: resident %.0f MiB (%.1f KiB per job), %.0f goroutines\n",
		held, rss, rss*1024/float64(held), goroutines)
	verdict := "met"
	if rss >= 512 || held < 10000 {
		verdict = "NOT met"
	}
	fmt.Printf("target: 10000 concurrent jobs under 512 MiB resident: %s\n", verdict)
	return nil
}

// residentMiB reads a process's resident set size.
func residentMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

// gauge reads one unlabelled value from a Prometheus text endpoint.
func gauge(url, name string) (float64, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", url, name)
}
