package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// run is what one run saw, for the report.
type runStats struct {
	chaosStart, chaosEnd time.Time
	// redisLosses are the times Redis came back empty; resumeLag how long
	// after each every job that was unfinished then had moved again (0
	// when not all did), with resumeJobs such jobs and resumeLeft those
	// that never moved.
	redisLosses []time.Time
	redisDown   time.Duration
	resumeLag   []time.Duration
	resumeJobs  []int
	resumeLeft  []int
	// quietAfter is how long after the chaos no job was unfinished; 0 when
	// that did not happen within the settle time.
	quietAfter time.Duration
	events     []string
	reconciles []string
	faults     *injector
	jobCounts  map[string]map[string]int // by kind and status, at the end
}

// runChaos runs the fleet, the stream and the chaos, then checks. It
// returns whether every invariant held.
func runChaos(ctx context.Context, c config) (bool, error) {
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		return false, err
	}
	pcfg, err := pgxpool.ParseConfig(c.databaseURL)
	if err != nil {
		return false, err
	}
	pcfg.MaxConns = 4
	db, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return false, err
	}
	defer db.Close()

	f, err := newFleet(c)
	if err != nil {
		return false, err
	}
	defer f.stopAll(15 * time.Second)
	go func() { <-ctx.Done(); f.halt() }()
	for _, role := range []string{"api", "scheduler"} {
		if _, err := f.start(role); err != nil {
			return false, err
		}
	}
	for range c.workers {
		if _, err := f.start("worker"); err != nil {
			return false, err
		}
	}
	if err := waitAPI(ctx, c.api, 30*time.Second); err != nil {
		return false, err
	}
	hc := newHTTPClient(15 * time.Second)
	api := &client{hc: hc, base: c.api, key: c.key, platformKey: c.platformKey}
	if err := api.learnTeam(ctx); err != nil {
		return false, err
	}
	pve := &sim{hc: hc, base: c.proxmoxSim, token: "PVEAPIToken=" + c.tokenID + "=" + c.tokenSecret}
	ptero := &sim{hc: hc, base: c.pteroSim}
	bm := &sim{hc: hc, base: c.tenantosSim}
	d := newDriver(c, api, pve, ptero, bm)
	logf("fleet up: API %s, scheduler, %d workers; setting up services", c.api, c.workers)
	if err := d.setup(ctx); err != nil {
		return false, err
	}

	st := &runStats{faults: &injector{pve: pve, ptero: ptero, bm: bm, rng: rand.New(rand.NewPCG(c.seed, 0xfa17)), counts: map[string]int{}}}
	st.chaosStart = time.Now()
	until := st.chaosStart.Add(c.duration)
	logf("chaos for %s: %d job requests, faults, worker kills every 5-10 s, one API kill, one scheduler kill, one Redis loss", c.duration, c.jobs)
	chaosCtx, stopChaos := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	event := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		logf("%s", msg)
		mu.Lock()
		st.events = append(st.events, fmt.Sprintf("%5.1fs  %s", time.Since(st.chaosStart).Seconds(), msg))
		mu.Unlock()
	}
	if err := st.faults.start(chaosCtx); err != nil {
		stopChaos()
		return false, err
	}
	wg.Add(4)
	go func() { defer wg.Done(); st.faults.run(chaosCtx, until) }()
	go func() { defer wg.Done(); killWorkers(chaosCtx, f, until, c.seed, event) }()
	go func() { defer wg.Done(); d.stream(chaosCtx, until) }()
	go func() {
		defer wg.Done()
		at := func(share float64) bool {
			select {
			case <-chaosCtx.Done():
				return false
			case <-time.After(time.Until(st.chaosStart.Add(time.Duration(share * float64(c.duration))))):
				return true
			}
		}
		// killAndRestart SIGKILLs the running process of role and starts
		// another after a pause; it reports whether the new one started.
		killAndRestart := func(role string, pause time.Duration) bool {
			p := f.running(role)
			if len(p) == 0 {
				return false
			}
			f.kill(p[0])
			event("SIGKILLed %s; restarting it in %s", p[0].name, pause)
			time.Sleep(pause)
			if _, err := f.start(role); err != nil {
				event("could not restart the %s: %v", role, err)
				return false
			}
			return true
		}
		if at(0.2) && killAndRestart("api", 2*time.Second) {
			if err := waitAPI(ctx, c.api, 30*time.Second); err != nil {
				event("%v", err)
			}
		}
		if at(0.35) {
			event("Redis: SHUTDOWN NOSAVE; back, empty, in 10 s")
			st.redisDown = 10 * time.Second
			back, err := redisLoss(ctx, c, st.redisDown)
			if err != nil {
				event("Redis loss failed: %v", err)
			} else {
				mu.Lock()
				st.redisLosses = append(st.redisLosses, back)
				mu.Unlock()
				event("Redis restarted empty")
				wg.Add(1)
				go func() {
					defer wg.Done()
					lag, n, left := resumeLag(ctx, db, back, until.Add(c.settle))
					mu.Lock()
					st.resumeLag, st.resumeJobs, st.resumeLeft = append(st.resumeLag, lag), append(st.resumeJobs, n), append(st.resumeLeft, left)
					mu.Unlock()
				}()
			}
		}
		if at(0.5) {
			d.cancelServices(chaosCtx)
		}
		if at(0.6) {
			killAndRestart("scheduler", 3*time.Second)
		}
	}()
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(until)):
	}
	stopChaos()
	// The stream and the event goroutine end by themselves; the lag
	// measurement may go on into the settle time.
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	clearFaults(ctx, pve, ptero, bm)
	st.chaosEnd = time.Now()
	for len(f.running("worker")) < c.workers {
		if _, err := f.start("worker"); err != nil {
			return false, err
		}
	}
	logf("chaos over (%d job requests sent); faults cleared; waiting up to %s for every job to end", d.sent, c.settle)
	st.quietAfter = waitQuiet(ctx, db, st.chaosEnd.Add(c.settle)).Sub(st.chaosEnd)
	if st.quietAfter < 0 {
		st.quietAfter = 0
	}
	<-waitDone
	if st.quietAfter > 0 {
		logf("quiet %.1fs after the chaos", st.quietAfter.Seconds())
	} else {
		logf("not quiet %s after the chaos", c.settle)
	}
	// Two rounds: the first makes recorded power states follow the VMs,
	// the second must find nothing left.
	reconcileStart := time.Now()
	for i := range 2 {
		cmd := exec.CommandContext(ctx, c.bin, "reconcile")
		cmd.Env = append(os.Environ(), "LOG_LEVEL=error")
		out, err := cmd.CombinedOutput()
		if err != nil {
			st.reconciles = append(st.reconciles, fmt.Sprintf("round %d failed: %v: %s", i+1, err, out))
			continue
		}
		st.reconciles = append(st.reconciles, strings.TrimRight(string(out), "\n"))
	}
	res := check(ctx, c, db, pve, ptero, bm, st, reconcileStart)
	if st.jobCounts, err = loadJobCounts(ctx, db); err != nil {
		return false, err
	}
	report(os.Stdout, c, d, f, st, res)
	for _, r := range res {
		if !r.ok {
			return false, nil
		}
	}
	return true, nil
}

// clearFaults removes every scripted and random fault of the simulators.
func clearFaults(ctx context.Context, sims ...*sim) {
	for _, s := range sims {
		for i := 0; i < 5; i++ {
			if err := s.control(ctx, http.MethodDelete, "/_sim/faults", nil); err == nil {
				break
			} else if i == 4 {
				logf("could not clear the faults of %s: %v", s.base, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// killWorkers SIGKILLs a random worker every 5 to 10 seconds and starts
// another in its place.
func killWorkers(ctx context.Context, f *fleet, until time.Time, seed uint64, event func(string, ...any)) {
	rng := rand.New(rand.NewPCG(seed, 0xdead))
	for {
		wait := 5*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))
		if time.Now().Add(wait).After(until) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		ws := f.running("worker")
		if len(ws) == 0 {
			continue
		}
		w := ws[rng.IntN(len(ws))]
		f.kill(w)
		p, err := f.start("worker")
		if err != nil {
			event("SIGKILLed %s; could not start another: %v", w.name, err)
			continue
		}
		event("SIGKILLed %s, started %s", w.name, p.name)
	}
}

// unfinished are the statuses of a job that has not ended.
const unfinished = `('queued', 'scheduled', 'running', 'retrying')`

// resumeLag measures how long after Redis came back (at back) every job
// that was unfinished then had moved again: changed since, or ended. It
// returns 0 when not all did by the deadline, with how many never moved.
func resumeLag(ctx context.Context, db *pgxpool.Pool, back, deadline time.Time) (time.Duration, int, int) {
	var ids []string
	rows, err := db.Query(ctx, `SELECT id::text FROM jobs WHERE status IN `+unfinished+` AND status <> 'scheduled' AND created_at < $1`, back)
	if err != nil {
		logf("resume lag: %v", err)
		return 0, 0, -1
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()
	left := len(ids)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		err := db.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE id::text = ANY($1) AND status IN `+unfinished+` AND updated_at <= $2`,
			ids, back).Scan(&left)
		if err == nil && left == 0 {
			lag := time.Since(back)
			logf("every job unfinished when Redis came back (%d) moved again within %.1fs", len(ids), lag.Seconds())
			return lag, len(ids), 0
		}
		time.Sleep(500 * time.Millisecond)
	}
	return 0, len(ids), left
}

// waitQuiet waits until no job is unfinished, or the deadline; it returns
// when it became quiet (the zero time when it did not).
func waitQuiet(ctx context.Context, db *pgxpool.Pool, deadline time.Time) time.Time {
	last := -1
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status IN `+unfinished).Scan(&n); err == nil {
			if n == 0 {
				return time.Now()
			}
			if n != last {
				logf("%s unfinished", plural(n, "job"))
				last = n
			}
		}
		time.Sleep(time.Second)
	}
	return time.Time{}
}

// injector injects provider faults: random 500s with latency on a share of
// every call, and every 1.5–3 s a scripted one: an answer dropped after
// the call was carried out, a delay, a few 500s (and, at Tenantos, a few
// 429s with Retry-After).
type injector struct {
	pve, ptero, bm *sim
	rng            *rand.Rand
	mu             sync.Mutex
	counts         map[string]int // by "simulator kind op"
	cloneDrops     int
	installDrops   int // dropped answers of Tenantos' startReinstallation
}

// The share of calls that fail at random, and their latency.
const (
	randomRate    = 0.05
	randomLatency = "50ms"
)

var (
	pveMutating   = []string{"start", "stop", "shutdown", "reset", "suspend", "resume", "clone", "config.update", "resize", "destroy", "vzdump", "qemu.create", "content.delete"}
	pveReads      = []string{"status.current", "config.get", "task.status", "node.time", "tasks.list", "content.list"}
	pteroMutating = []string{"client.power", "servers.create", "servers.build", "backups.create", "backups.delete", "backups.restore",
		"servers.suspend", "servers.unsuspend", "client.reinstall", "servers.reinstall", "servers.delete"}
	pteroReads = []string{"servers.get", "client.server", "client.resources", "backups.get", "backups.list"}
	bmMutating = []string{"provisioning.startReinstallation", "provisioning.stopReinstallation", "power.setPowerOn", "power.setPowerOff",
		"power.setPowerReset", "power.setPowerCycle", "servers.update"}
	bmReads = []string{"servers.get", "servers.getByTags", "provisioning.getInstallStatus", "power.getPowerStatus"}
)

func (in *injector) start(ctx context.Context) error {
	for _, s := range []*sim{in.pve, in.ptero, in.bm} {
		if err := s.control(ctx, http.MethodPost, "/_sim/random", map[string]any{"rate": randomRate, "status": 500, "latency": randomLatency}); err != nil {
			return fmt.Errorf("random faults: %w", err)
		}
	}
	return nil
}

func (in *injector) run(ctx context.Context, until time.Time) {
	for {
		wait := 1500*time.Millisecond + time.Duration(in.rng.Int64N(int64(1500*time.Millisecond)))
		if time.Now().Add(wait).After(until) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		var s *sim
		var name string
		var f map[string]any
		// 100 to 139 are Tenantos': two sevenths of the scripted faults.
		switch r := in.rng.IntN(140); {
		case r < 45:
			op := pveMutating[in.rng.IntN(len(pveMutating))]
			s, name, f = in.pve, "proxmox drop "+op, map[string]any{"op": op, "drop": true, "times": 1}
			if op == "clone" {
				in.mu.Lock()
				in.cloneDrops++
				in.mu.Unlock()
			}
		case r < 60:
			op := pteroMutating[in.rng.IntN(len(pteroMutating))]
			s, name, f = in.ptero, "pterodactyl drop "+op, map[string]any{"op": op, "drop": true, "times": 1}
		case r < 75:
			op := pveReads[in.rng.IntN(len(pveReads))]
			s, name, f = in.pve, "proxmox latency "+op, map[string]any{"op": op, "latency": fmt.Sprintf("%dms", 1000+in.rng.IntN(2000)), "times": 3}
		case r < 85:
			op := pveMutating[in.rng.IntN(len(pveMutating))]
			s, name, f = in.pve, "proxmox 500 "+op, map[string]any{"op": op, "status": 500, "message": "got timeout", "times": 2}
		case r < 93:
			op := pteroReads[in.rng.IntN(len(pteroReads))]
			s, name, f = in.ptero, "pterodactyl latency "+op, map[string]any{"op": op, "latency": fmt.Sprintf("%dms", 1000+in.rng.IntN(2000)), "times": 3}
		case r < 100:
			op := pteroMutating[in.rng.IntN(len(pteroMutating))]
			s, name, f = in.ptero, "pterodactyl 500 "+op, map[string]any{"op": op, "status": 500, "times": 2}
		case r < 114:
			op := bmMutating[in.rng.IntN(len(bmMutating))]
			s, name, f = in.bm, "tenantos drop "+op, map[string]any{"op": op, "drop": true, "times": 1}
			if op == "provisioning.startReinstallation" {
				in.mu.Lock()
				in.installDrops++
				in.mu.Unlock()
			}
		case r < 122:
			op := bmReads[in.rng.IntN(len(bmReads))]
			s, name, f = in.bm, "tenantos latency "+op, map[string]any{"op": op, "latency": fmt.Sprintf("%dms", 1000+in.rng.IntN(2000)), "times": 3}
		case r < 131:
			op := bmMutating[in.rng.IntN(len(bmMutating))]
			s, name, f = in.bm, "tenantos 500 "+op, map[string]any{"op": op, "status": 500, "times": 2}
		default:
			ops := slices.Concat(bmMutating, bmReads)
			op := ops[in.rng.IntN(len(ops))]
			s, name, f = in.bm, "tenantos 429 "+op, map[string]any{"op": op, "status": 429, "retryAfter": fmt.Sprintf("%ds", 1+in.rng.IntN(3)), "times": 2}
		}
		if err := s.control(ctx, http.MethodPost, "/_sim/faults", f); err != nil {
			logf("fault %s: %v", name, err)
			continue
		}
		in.mu.Lock()
		in.counts[name]++
		in.mu.Unlock()
	}
}

// summary counts the scripted faults by simulator and kind.
func (in *injector) summary() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	kinds := map[string]int{}
	for name, n := range in.counts {
		f := strings.Fields(name)
		kinds[f[0]+" "+f[1]] += n
	}
	var out []string
	for k, n := range kinds {
		out = append(out, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(out)
	return out
}
