// Command provisiond runs the provisioning fleet: the HTTP API, the workers,
// the scheduler, schema migrations, an all-in-one development mode with
// simulated providers, and the operators' key and team commands.
//
//	provisiond api|worker|scheduler|migrate|dev
//	provisiond keys create --team T [--name N] [--scopes a,b] [--expires RFC3339] [--ip CIDR,...] [--rate-limit N]
//	provisiond keys list [--team T]
//	provisiond keys revoke ID|PREFIX
//	provisiond teams create NAME
//	provisiond teams list
//
// Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/monitoring/alerting"
	"github.com/hostfleet/provisiond/sql/migrations"
)

const usage = `usage: provisiond COMMAND

  api        serve the HTTP API, the queue dashboard and /metrics
  worker     run jobs
  scheduler  put back jobs that drifted from their tasks; schedule rounds
  migrate    apply database migrations and tag registered VMs
  reconcile  compare every live service with its provider once and print what differs
  dev        everything in one process, with simulated providers and demo data
  keys       create, list and revoke API keys
  teams      create and list teams
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if args[0] == "dev" {
		applyDevDefaults(&cfg)
	}
	log, err := cfg.logger()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var cmd func(context.Context, *app) error
	switch args[0] {
	case "api":
		cmd = runAPI
	case "worker":
		cmd = runWorker
	case "scheduler":
		cmd = runScheduler
	case "migrate":
		cmd = func(ctx context.Context, a *app) error {
			if err := migrations.Up(ctx, a.pool, a.log); err != nil {
				return err
			}
			return a.claimRegisteredVMs(ctx)
		}
	case "dev":
		cmd = func(ctx context.Context, a *app) error { return runDev(ctx, a, stdout) }
	case "reconcile":
		cmd = func(ctx context.Context, a *app) error { return reconcileCommand(ctx, a, stdout) }
	case "keys":
		cmd = func(ctx context.Context, a *app) error { return keysCommand(ctx, a, args[1:], stdout) }
	case "teams":
		cmd = func(ctx context.Context, a *app) error { return teamsCommand(ctx, a, args[1:], stdout) }
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	defer a.close()
	if err := cmd(ctx, a); err != nil && !errors.Is(err, context.Canceled) {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, err)
			return 2
		}
		log.Error(args[0]+" failed", "err", err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError string

func (e usageError) Error() string { return string(e) }

func runAPI(ctx context.Context, a *app) error {
	h, err := a.apiHandler(ctx)
	if err != nil {
		return err
	}
	a.log.Info("api listening", "addr", a.cfg.HTTPAddr)
	return serveHTTP(ctx, a.cfg.HTTPAddr, h, a.log)
}

func runWorker(ctx context.Context, a *app) error {
	srv, h, err := a.workers()
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(ctx, a.cfg.MetricsAddr, a.metricsHandler(), a.log) })
	g.Go(func() error { return runAsynq(ctx, srv, h, a.log) })
	return g.Wait()
}

func runScheduler(ctx context.Context, a *app) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(ctx, a.cfg.MetricsAddr, a.metricsHandler(), a.log) })
	g.Go(func() error { a.sweeper().Run(ctx, a.cfg.SweepInterval); return nil })
	g.Go(func() error { return a.runPeriodic(ctx) })
	a.log.Info("scheduler running", "sweep_interval", a.cfg.SweepInterval, "alert_interval", a.cfg.AlertInterval)
	return g.Wait()
}

// runPeriodic enqueues the periodic tasks (the monitoring round) with
// asynq's scheduler until ctx ends. Several schedulers may run: a round's
// batches have ids derived from its time, so a second round task of the
// same interval adds nothing.
func (a *app) runPeriodic(ctx context.Context) error {
	s := asynq.NewScheduler(a.redis, &asynq.SchedulerOpts{
		Logger: jobs.AsynqLogger(a.log.With("component", "periodic")), LogLevel: asynq.WarnLevel,
	})
	spec := fmt.Sprintf("@every %s", a.cfg.AlertInterval)
	if _, err := s.Register(spec, alerting.NewRoundTask(time.Time{}), asynq.Unique(a.cfg.AlertInterval/2),
		asynq.Timeout(a.cfg.AlertInterval), asynq.MaxRetry(1)); err != nil {
		return fmt.Errorf("schedule monitoring rounds: %w", err)
	}
	if _, err := s.Register(fmt.Sprintf("@every %s", a.cfg.ReconcileInterval), asynq.NewTask(jobs.TaskReconcile, nil),
		asynq.Unique(a.cfg.ReconcileInterval/2), asynq.Timeout(a.cfg.ReconcileInterval), asynq.MaxRetry(1), asynq.Queue(jobs.QueueLow)); err != nil {
		return fmt.Errorf("schedule reconciliation rounds: %w", err)
	}
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	s.Shutdown()
	return nil
}

// runAsynq processes tasks until ctx ends, then stops taking new ones and
// gives running jobs the shutdown timeout to finish; what does not finish
// goes back on its queue and resumes from its checkpoint elsewhere.
func runAsynq(ctx context.Context, srv *asynq.Server, h asynq.Handler, log *slog.Logger) error {
	if err := srv.Start(h); err != nil {
		return err
	}
	log.Info("worker running")
	<-ctx.Done()
	log.Info("worker shutting down")
	srv.Shutdown()
	return nil
}
