// Command chaos is the chaos suite behind `make chaos`: against a fleet of
// separate processes (one API, one scheduler, three or more workers, the
// provider simulators in a providersim process, PostgreSQL and Redis) it
// drives a mixed stream of jobs on VPS, game servers and bare-metal servers
// (Tenantos) while the
// simulators fail, drop and delay a share of calls, workers are SIGKILLed
// every 5–10 s, the API and the scheduler are killed once each and Redis
// loses its data once; then it clears the faults, waits for quiet, runs two
// reconciliation rounds and checks the fleet's invariants, printing a table
// and exiting 1 when one fails.
//
// scripts/chaos.sh starts PostgreSQL, Redis and the simulators, applies the
// migrations, makes the team and key and then runs this program, which
// starts, kills and restarts the API, scheduler and workers itself:
//
//	chaos [-short] [-jobs N] [-duration D] [-settle D] [-workers N] [-seed N]
//
// It reads the fleet's configuration from the environment as the fleet
// does (DATABASE_URL, REDIS_ADDR, HTTP_ADDR, PROXMOX_URL, PTERODACTYL_URL,
// TENANTOS_URL, PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET, TENANTOS_POOL_TAGS,
// TENANTOS_WIPE_PROFILE) and the API keys from CHAOS_KEY
// (the team's) and CHAOS_PLATFORM_KEY;
// every address must be on 127.0.0.1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is what one run does.
type config struct {
	short    bool
	jobs     int
	duration time.Duration
	settle   time.Duration
	workers  int
	seed     uint64
	// vps are provisioned from the template; extraVMs are added to the
	// simulator beside its demo VMs and registered; games are game servers.
	vps, extraVMs, games int
	// cancelVPS and cancelGames are services cancelled immediately
	// halfway through the chaos (terminated after CANCEL_GRACE).
	cancelVPS, cancelGames int
	// bareMetal are bare-metal services ordered at setup (one more may be
	// ordered during the chaos); cancelBareMetal of them are cancelled
	// immediately halfway through.
	bareMetal, cancelBareMetal int
	template                   int

	bin         string // the provisiond binary
	servicesSh  string // scripts/services.sh, to restart Redis
	logDir      string
	metricsPort int // first METRICS_ADDR port of schedulers and workers
	apiAddr     string
	api         string // http://HTTP_ADDR
	proxmoxSim  string // the Proxmox simulator's base URL (no /api2/json)
	pteroSim    string
	tenantosSim string   // the Tenantos simulator's base URL (no /api)
	poolTags    []string // TENANTOS_POOL_TAGS: the tags of a free server
	wipeProfile int      // TENANTOS_WIPE_PROFILE: terminations wipe with it when set
	key         string   // the chaos team's
	platformKey string   // for what only the platform may do (see client.do)
	databaseURL string
	pgPort      string
	redisPort   string
	tokenID     string
	tokenSecret string
	cancelGrace time.Duration
	sweepGrace  time.Duration
	sweepPeriod time.Duration
}

func main() {
	os.Exit(run())
}

func run() int {
	var c config
	flag.BoolVar(&c.short, "short", os.Getenv("CHAOS_SHORT") == "1", "a short run (about 2 minutes), cheap enough for CI")
	flag.IntVar(&c.jobs, "jobs", 300, "job requests to send during the chaos (80 with -short)")
	flag.DurationVar(&c.duration, "duration", 180*time.Second, "how long the chaos lasts (60s with -short)")
	flag.DurationVar(&c.settle, "settle", 2*time.Minute, "how long after the chaos every job must have ended")
	flag.IntVar(&c.workers, "workers", 3, "worker processes kept running")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the job stream, the faults and the kills")
	flag.StringVar(&c.bin, "bin", ".run/chaos-bin/provisiond", "the provisiond binary")
	flag.StringVar(&c.servicesSh, "services", "scripts/services.sh", "scripts/services.sh, which restarts Redis")
	flag.StringVar(&c.logDir, "logs", ".run/chaos-logs", "where the processes' logs go")
	flag.IntVar(&c.metricsPort, "metrics-port", 18320, "first METRICS_ADDR port of the scheduler and workers (60 ports are used)")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.vps, c.extraVMs, c.games, c.cancelVPS, c.cancelGames = 6, 2, 3, 2, 1
	c.bareMetal, c.cancelBareMetal = 3, 1
	if c.short {
		if !set["jobs"] {
			c.jobs = 80
		}
		if !set["duration"] {
			c.duration = 60 * time.Second
		}
		c.vps, c.extraVMs, c.games, c.cancelVPS, c.cancelGames = 3, 1, 2, 1, 1
		c.bareMetal, c.cancelBareMetal = 2, 1
	}
	c.template = 9000
	if err := c.fromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if c.workers < 3 || c.jobs < 1 || c.duration < 20*time.Second {
		fmt.Fprintln(os.Stderr, "chaos: want -workers 3 or more, -jobs 1 or more and -duration 20s or more")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := runChaos(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if !ok {
		return 1
	}
	return 0
}

// fromEnv reads the fleet's configuration as chaos.sh exports it.
func (c *config) fromEnv() error {
	need := func(name string) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("%s is not set (run through scripts/chaos.sh)", name)
		}
		return v, nil
	}
	var err error
	if c.key, err = need("CHAOS_KEY"); err != nil {
		return err
	}
	if c.platformKey, err = need("CHAOS_PLATFORM_KEY"); err != nil {
		return err
	}
	if c.databaseURL, err = need("DATABASE_URL"); err != nil {
		return err
	}
	if c.apiAddr, err = need("HTTP_ADDR"); err != nil {
		return err
	}
	c.api = "http://" + c.apiAddr
	pve, err := need("PROXMOX_URL")
	if err != nil {
		return err
	}
	c.proxmoxSim = strings.TrimSuffix(pve, "/api2/json")
	if c.pteroSim, err = need("PTERODACTYL_URL"); err != nil {
		return err
	}
	if c.tenantosSim, err = need("TENANTOS_URL"); err != nil {
		return err
	}
	c.tenantosSim = strings.TrimSuffix(strings.TrimSuffix(c.tenantosSim, "/"), "/api")
	c.poolTags = []string{"For Rent"}
	if v := os.Getenv("TENANTOS_POOL_TAGS"); v != "" {
		c.poolTags = strings.Split(v, ",")
	}
	c.wipeProfile, _ = strconv.Atoi(os.Getenv("TENANTOS_WIPE_PROFILE"))
	if c.tokenSecret, err = need("PROXMOX_TOKEN_SECRET"); err != nil {
		return err
	}
	c.tokenID = os.Getenv("PROXMOX_TOKEN_ID")
	if c.tokenID == "" {
		c.tokenID = "root@pam!provisiond"
	}
	redis, err := need("REDIS_ADDR")
	if err != nil {
		return err
	}
	if _, c.redisPort, err = net.SplitHostPort(redis); err != nil {
		return fmt.Errorf("REDIS_ADDR: %w", err)
	}
	u, err := url.Parse(c.databaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	c.pgPort = u.Port()
	for _, addr := range []string{redis, u.Host, c.apiAddr, hostOf(c.proxmoxSim), hostOf(c.pteroSim), hostOf(c.tenantosSim)} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			return fmt.Errorf("%q: every address must be 127.0.0.1:PORT", addr)
		}
	}
	c.cancelGrace = envDuration("CANCEL_GRACE", 48*time.Hour)
	c.sweepGrace = envDuration("SWEEP_GRACE", 2*time.Minute)
	c.sweepPeriod = envDuration("SWEEP_INTERVAL", 30*time.Second)
	if c.cancelGrace > time.Minute {
		return errors.New("CANCEL_GRACE must be a minute or less, so that terminations happen within the run")
	}
	return nil
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Host
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// plural is "1 job" or "2 jobs".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
