package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fleet runs the provisiond processes: the API, the scheduler and the
// workers, each its own OS process logging to its own file, with a pid file
// under logDir/pids so that chaos.sh can end them should this program die.
type fleet struct {
	c      config
	pidDir string

	mu       sync.Mutex
	procs    map[string]*proc
	seq      map[string]int // processes started, by role
	stopping bool
	// unexpected are processes that ended without being killed.
	unexpected []string
	kills      map[string]int // SIGKILLs, by role
	started    map[string]int // processes started, by role
}

// proc is one running process.
type proc struct {
	name, role string
	cmd        *exec.Cmd
	done       chan struct{}
	killed     bool // by us
	log        string
}

func newFleet(c config) (*fleet, error) {
	f := &fleet{c: c, pidDir: filepath.Join(c.logDir, "pids"), procs: map[string]*proc{},
		seq: map[string]int{}, kills: map[string]int{}, started: map[string]int{}}
	if err := os.MkdirAll(f.pidDir, 0o755); err != nil {
		return nil, err
	}
	return f, nil
}

// start starts a process of role (api, scheduler, worker) with the
// environment's configuration and extra variables.
func (f *fleet) start(role string) (*proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return nil, errors.New("the fleet is stopping")
	}
	f.seq[role]++
	n := f.seq[role]
	name := fmt.Sprintf("%s-%d", role, n)
	env := slices.Clone(os.Environ())
	switch role {
	case "api":
		env = append(env, "HTTP_ADDR="+f.c.apiAddr)
	case "scheduler":
		env = append(env, fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", f.c.metricsPort+n%10))
	case "worker":
		env = append(env, fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", f.c.metricsPort+10+n%50))
	}
	logPath := filepath.Join(f.c.logDir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(f.c.bin, role)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a Ctrl-C reaches this program (which
	// ends the fleet itself) and not the fleet behind its back; and it dies
	// with this one, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, role: role, cmd: cmd, done: make(chan struct{}), log: logPath}
	pidFile := filepath.Join(f.pidDir, name+".pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	f.procs[name] = p
	f.started[role]++
	go func() {
		err := cmd.Wait()
		out.Close()
		os.Remove(pidFile)
		f.mu.Lock()
		delete(f.procs, name)
		unexpected := !p.killed && !f.stopping
		if unexpected {
			f.unexpected = append(f.unexpected, fmt.Sprintf("%s (pid %d) ended by itself: %v; last lines of %s:\n%s",
				name, cmd.Process.Pid, err, logPath, tail(logPath, 5)))
		}
		f.mu.Unlock()
		close(p.done)
		if unexpected {
			logf("%s ended by itself (%v); starting another", name, err)
			if _, err := f.start(role); err != nil {
				logf("could not start another %s: %v", role, err)
			}
		}
	}()
	return p, nil
}

// halt stops restarting processes that end by themselves.
func (f *fleet) halt() {
	f.mu.Lock()
	f.stopping = true
	f.mu.Unlock()
}

// running returns the running processes of role.
func (f *fleet) running(role string) []*proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*proc
	for _, p := range f.procs {
		if p.role == role && !p.killed {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *proc) int { return strings.Compare(a.name, b.name) })
	return out
}

// kill SIGKILLs p and waits until it is gone.
func (f *fleet) kill(p *proc) {
	f.mu.Lock()
	p.killed = true
	f.kills[p.role]++
	f.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stopAll ends every process: SIGTERM, then SIGKILL for what is left after
// the timeout.
func (f *fleet) stopAll(timeout time.Duration) {
	f.mu.Lock()
	f.stopping = true
	procs := make([]*proc, 0, len(f.procs))
	for _, p := range f.procs {
		procs = append(procs, p)
	}
	f.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(timeout)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			for _, q := range procs {
				q.cmd.Process.Signal(syscall.SIGKILL)
			}
			for _, q := range procs {
				<-q.done
			}
			return
		}
	}
}

// unexpectedExits lists the processes that ended without being killed.
func (f *fleet) unexpectedExits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.unexpected)
}

func (f *fleet) counts() (kills, started map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kills, started = map[string]int{}, map[string]int{}
	for k, v := range f.kills {
		kills[k] = v
	}
	for k, v := range f.started {
		started[k] = v
	}
	return kills, started
}

// waitAPI waits until the API answers its ping.
func waitAPI(ctx context.Context, api string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		res, err := hc.Get(api + "/api/ping")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API at %s did not answer within %s", api, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return "    " + strings.Join(lines, "\n    ")
}

// redisLoss makes Redis lose every key: SHUTDOWN NOSAVE (its data was never
// saved: chaos.sh's Redis runs without persistence), down for `down`, then
// started again, empty, with the same configuration by services.sh. It
// returns when the new Redis answers.
func redisLoss(ctx context.Context, c config, down time.Duration) (time.Time, error) {
	out, _ := exec.CommandContext(ctx, "redis-cli", "-p", c.redisPort, "SHUTDOWN", "NOSAVE").CombinedOutput()
	if err := exec.CommandContext(ctx, "redis-cli", "-p", c.redisPort, "PING").Run(); err == nil {
		return time.Time{}, fmt.Errorf("redis still answers after SHUTDOWN NOSAVE: %s", out)
	}
	select {
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-time.After(down):
	}
	cmd := exec.CommandContext(ctx, c.servicesSh, "start", "chaos", c.pgPort, c.redisPort)
	if out, err := cmd.CombinedOutput(); err != nil {
		return time.Time{}, fmt.Errorf("restart redis: %v: %s", err, out)
	}
	n, err := exec.CommandContext(ctx, "redis-cli", "-p", c.redisPort, "DBSIZE").Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("redis after restart: %w", err)
	}
	logf("redis is back, empty (DBSIZE %s)", strings.TrimSpace(string(n)))
	return time.Now(), nil
}

var logStart = time.Now()

// logf prints a progress line on standard error.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chaos %6.1fs  %s\n", time.Since(logStart).Seconds(), fmt.Sprintf(format, args...))
}
