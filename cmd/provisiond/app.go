package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hibiken/asynq"
	queuemetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/hibiken/asynqmon"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/wings"
	"github.com/hostfleet/provisiond/adapters/tenantos"
	"github.com/hostfleet/provisiond/adapters/webhook"
	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/monitoring/alerting"
	"github.com/hostfleet/provisiond/monitoring/metrics"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/apikey"
)

// app holds what every part of the process shares.
type app struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	q       *queries.Queries
	redis   asynq.RedisClientOpt
	metrics *metrics.Metrics
	sealer  *jobs.Sealer
	// now is the clock cancellations are timed by; nil is the wall clock.
	now func() time.Time
	// webhookCAs, when set, are the CAs trusted for webhooks (tests).
	webhookCAs *x509.CertPool
	pve        *proxmox.Client
	ptero      *pterodactyl.Client
	bareMetal  *tenantos.Client
	closers    []func()
}

func newApp(ctx context.Context, cfg Config, log *slog.Logger) (*app, error) {
	sealer, err := jobs.NewSealer(cfg.SecretsKey)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	// pgxpool's default (the number of CPUs, at least 4) starves an API
	// whose every request waits on the database.
	pcfg.MaxConns = int32(cfg.DatabaseMaxConns)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	a := &app{
		cfg: cfg, log: log, pool: pool, q: queries.New(pool), metrics: metrics.New(), sealer: sealer,
		redis: asynq.RedisClientOpt{Addr: cfg.RedisAddr, Password: cfg.RedisPassword, DB: cfg.RedisDB},
	}
	a.closers = append(a.closers, pool.Close)
	return a, nil
}

// close releases everything in reverse order of acquisition.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

func (a *app) jobClient() *jobs.Client {
	c := asynq.NewClient(a.redis)
	a.closers = append(a.closers, func() { c.Close() })
	jc := jobs.NewClient(a.q, c, a.cfg.JobRetention, a.log)
	jc.Sealer = a.sealer
	return jc
}

func (a *app) inspector() *asynq.Inspector {
	in := asynq.NewInspector(a.redis)
	a.closers = append(a.closers, func() { in.Close() })
	return in
}

// apiHandler builds the API. The event hub runs until ctx ends.
func (a *app) apiHandler(ctx context.Context) (http.Handler, error) {
	proxies, err := a.cfg.trustedProxies()
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: a.cfg.RedisAddr, Password: a.cfg.RedisPassword, DB: a.cfg.RedisDB})
	a.closers = append(a.closers, func() { rdb.Close() })
	inspector := a.inspector()
	a.metrics.Registry.MustRegister(queuemetrics.NewQueueMetricsCollector(inspector))
	hub := jobs.NewEventHub(a.pool, a.log.With("component", "events"))
	go hub.Run(ctx)
	providers, err := a.registry()
	if err != nil {
		return nil, err
	}
	vps, _ := jobs.Capability[*jobs.VPSWorkers](providers, jobs.ProviderProxmox)
	games, _ := jobs.Capability[*jobs.GameWorkers](providers, jobs.ProviderPterodactyl)
	bareMetal, _ := jobs.Capability[*jobs.BareMetalWorkers](providers, jobs.ProviderTenantos)
	var viewerKey []byte
	if games != nil {
		// The API's game provider carries the live consoles to viewers;
		// without SECRETS_KEY there are none.
		if a.cfg.SecretsKey != "" {
			games.Consoles = wings.NewHub(wings.Config{Origin: a.cfg.PterodactylURL,
				Log: a.log.With("component", "consoles"), Observer: a.metrics})
			a.closers = append(a.closers, games.Consoles.Close)
			sum := sha256.Sum256([]byte("console viewer tokens\x00" + a.cfg.SecretsKey))
			viewerKey = sum[:]
		}
	}
	guard, err := a.cfg.webhookGuard()
	if err != nil {
		return nil, err
	}
	keys := apikey.NewCache(a.q, time.Minute)
	go keys.Run(ctx, a.pool, a.log.With("component", "keys"))
	dash := asynqmon.New(asynqmon.Options{
		RootPath: "/monitoring/queues", RedisConnOpt: a.redis, ReadOnly: a.cfg.DashboardReadOnly,
	})
	a.closers = append(a.closers, func() { dash.Close() })
	jobClient := a.jobClient()
	s := &web.Server{
		Config: web.Config{
			RateLimit: a.cfg.RateLimit, TrustedProxies: proxies,
			OperatorUser: a.cfg.OperatorUser, OperatorPassword: a.cfg.OperatorPassword,
			ViewerKey: viewerKey, Now: a.now,
		},
		Queries: a.q, Keys: keys, Jobs: jobClient, Events: hub, Inspector: inspector,
		Limiter: redis_rate.NewLimiter(rdb), Metrics: a.metrics, Dashboard: dash, VPS: vps, Games: games, BareMetal: bareMetal,
		Providers: providers,
		Services: &service.Services{DB: a.pool, Queries: a.q, Jobs: jobClient, Tasks: inspector, Providers: providers,
			Verifier: a.reconciler(providers), CancelGrace: a.cfg.CancelGrace, Now: a.now, Log: a.log.With("component", "services")},
		Webhooks: guard, Log: a.log.With("component", "api"),
	}
	return s.Handler(), nil
}

// workers builds the worker server and the handler of every job kind.
func (a *app) workers() (*asynq.Server, asynq.Handler, error) {
	queues, err := a.cfg.queues()
	if err != nil {
		return nil, nil, err
	}
	if a.cfg.ProxmoxTokenSecret == "" {
		return nil, nil, errors.New("PROXMOX_TOKEN_SECRET is not set")
	}
	log := a.log.With("component", "worker")
	ws := jobs.NewWorkers(a.q, a.metrics, log)
	ws.Sealer = a.sealer
	providers, err := a.registry()
	if err != nil {
		return nil, nil, err
	}
	if games, ok := jobs.Capability[*jobs.GameWorkers](providers, jobs.ProviderPterodactyl); ok {
		// The workers' game provider follows installs' output in the jobs' logs.
		games.Consoles = wings.NewHub(wings.Config{Origin: a.cfg.PterodactylURL, IdleClose: time.Second, Log: log.With("component", "installs")})
		a.closers = append(a.closers, games.Consoles.Close)
	}
	for _, p := range jobs.Capable[jobs.WorkerSet](providers) {
		p.AddWorkers(ws)
	}
	jobs.AddWorker(ws, &jobs.PowerWorker{Queries: a.q, Providers: providers})
	jobs.AddWorker(ws, &jobs.TerminationWorker{Queries: a.q, Providers: providers})
	ws.HandleTask(jobs.TaskReconcile, a.reconciler(providers).HandleRound)
	if err := a.addMonitoring(ws, providers); err != nil {
		return nil, nil, err
	}
	srv := jobs.NewServer(a.redis, jobs.ServerConfig{
		Concurrency: a.cfg.WorkerConcurrency, Queues: queues,
		Retry:           jobs.RetryPolicy{Base: a.cfg.RetryBase, Max: a.cfg.RetryMax},
		ShutdownTimeout: a.cfg.ShutdownTimeout,
	}, log)
	return srv, ws.Handler(), nil
}

// addMonitoring registers the monitoring rounds, their batches and the
// notification worker.
func (a *app) addMonitoring(ws *jobs.Workers, providers *jobs.Registry) error {
	guard, err := a.cfg.webhookGuard()
	if err != nil {
		return err
	}
	tasks := asynq.NewClient(a.redis)
	a.closers = append(a.closers, func() { tasks.Close() })
	notifier := &alerting.Notifier{Jobs: a.jobClient(), Queries: a.q, Sealer: a.sealer, Observer: a.metrics,
		Sender: webhook.NewSender(webhook.SenderConfig{Guard: guard, Timeout: a.cfg.WebhookTimeout, RootCAs: a.webhookCAs})}
	jobs.AddWorker(ws, notifier)
	m := &alerting.Monitor{Config: a.monitorConfig(), DB: a.pool, Tasks: tasks,
		Collector: &alerting.Collector{Providers: providers}, Notifier: notifier, Observer: a.metrics,
		Log: a.log.With("component", "alerting")}
	ws.HandleTask(alerting.TaskRound, m.HandleRound)
	ws.HandleTask(alerting.TaskCollect, m.HandleCollect)
	return nil
}

// registry returns the providers this process is configured for (see
// jobs.Provider); a provider without configuration is left out, and the API
// answers its live reads with 503.
func (a *app) registry() (*jobs.Registry, error) {
	pve, err := a.proxmox()
	if err != nil {
		return nil, err
	}
	ptero, err := a.pterodactyl()
	if err != nil {
		return nil, err
	}
	bareMetal, err := a.tenantos()
	if err != nil {
		return nil, err
	}
	locations, err := a.cfg.proxmoxLocations()
	if err != nil {
		return nil, err
	}
	var providers []jobs.Provider
	if pve != nil {
		providers = append(providers, &jobs.VPSWorkers{Queries: a.q, Proxmox: pve, Locations: locations, Storage: a.cfg.ProxmoxStorage,
			BackupStorage: a.cfg.ProxmoxBackupStorage, RescueISO: a.cfg.ProxmoxRescueISO, ConsoleTTL: a.cfg.ConsoleSessionTTL,
			ShutdownTimeout: a.cfg.PowerShutdownTimeout, AgentTimeout: a.cfg.ProxmoxAgentTimeout})
	}
	if ptero != nil {
		providers = append(providers, &jobs.GameWorkers{Queries: a.q, Pterodactyl: ptero, PollInterval: a.cfg.PterodactylPollInterval})
	}
	if bareMetal != nil {
		providers = append(providers, &jobs.BareMetalWorkers{Queries: a.q, Tenantos: bareMetal, PoolTags: a.cfg.TenantosPoolTags,
			PoolUser: a.cfg.TenantosPoolUser, WipeProfile: a.cfg.TenantosWipeProfile, PollInterval: a.cfg.TenantosPollInterval})
	}
	return jobs.NewRegistry(providers...), nil
}

// reconciler compares live services with their providers (see
// jobs.Reconciler).
func (a *app) reconciler(providers *jobs.Registry) *jobs.Reconciler {
	return &jobs.Reconciler{Queries: a.q, Providers: providers, OrphanGrace: a.cfg.OrphanGrace,
		Observer: a.metrics, Log: a.log.With("component", "reconciler")}
}

func (a *app) monitorConfig() alerting.Config {
	return alerting.Config{Interval: a.cfg.AlertInterval, BatchSize: a.cfg.AlertBatchSize, Retention: a.cfg.SampleRetention, Now: a.now}
}

// proxmox returns the Proxmox client, or nil when PROXMOX_TOKEN_SECRET is
// not set (an API without Proxmox answers its live reads with 503).
func (a *app) proxmox() (*proxmox.Client, error) {
	if a.cfg.ProxmoxTokenSecret == "" {
		return nil, nil
	}
	if a.pve == nil {
		pve, err := proxmox.New(proxmox.Config{
			URL: a.cfg.ProxmoxURL, TokenID: a.cfg.ProxmoxTokenID, TokenSecret: a.cfg.ProxmoxTokenSecret,
			CAFile: a.cfg.ProxmoxCAFile, RequestTimeout: a.cfg.ProxmoxRequestTimeout, PollInterval: a.cfg.ProxmoxPollInterval,
			ConsoleUser: a.cfg.ProxmoxConsoleUser, ConsolePassword: a.cfg.ProxmoxConsolePassword,
		}, a.metrics)
		if err != nil {
			return nil, err
		}
		a.pve = pve
	}
	return a.pve, nil
}

// pterodactyl returns the Pterodactyl client, or nil when PTERODACTYL_URL
// is not set.
func (a *app) pterodactyl() (*pterodactyl.Client, error) {
	if a.cfg.PterodactylURL == "" {
		return nil, nil
	}
	if a.ptero == nil {
		c, err := pterodactyl.New(pterodactyl.Config{
			URL: a.cfg.PterodactylURL, ApplicationKey: a.cfg.PterodactylApplicationKey, ClientKey: a.cfg.PterodactylClientKey,
			RequestTimeout: a.cfg.PterodactylRequestTimeout,
		}, a.metrics)
		if err != nil {
			return nil, err
		}
		a.ptero = c
	}
	return a.ptero, nil
}

// tenantos returns the Tenantos client, or nil when TENANTOS_URL is not
// set.
func (a *app) tenantos() (*tenantos.Client, error) {
	if a.cfg.TenantosURL == "" {
		return nil, nil
	}
	if a.bareMetal == nil {
		c, err := tenantos.New(tenantos.Config{URL: a.cfg.TenantosURL, APIKey: a.cfg.TenantosAPIKey,
			RequestTimeout: a.cfg.TenantosRequestTimeout}, a.metrics)
		if err != nil {
			return nil, err
		}
		a.bareMetal = c
	}
	return a.bareMetal, nil
}

func (a *app) sweeper() *jobs.Sweeper {
	return &jobs.Sweeper{
		Queries: a.q, Inspector: a.inspector(), Client: a.jobClient(),
		Grace: a.cfg.SweepGrace, Log: a.log.With("component", "sweeper"), Observer: a.metrics,
	}
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serveListener(ctx, ln, h, log)
}

func serveListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// Event streams end with their requests' contexts; Shutdown does not
	// wait for hijacked or streaming connections beyond the timeout.
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	return nil
}

// metricsHandler serves /metrics, and Go's profiles under /debug/pprof/,
// for the worker and scheduler processes; METRICS_ADDR is an internal
// address.
func (a *app) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

// claimRegisteredVMs tags the VMs of services registered before jobs
// checked a VM's identity, so that their jobs can: a VM that carries no
// service's mark is given its service's tag. One that is gone or carries
// another's is left alone and logged; its service's next job marks it
// needs_repair. Safe to run again.
func (a *app) claimRegisteredVMs(ctx context.Context) error {
	pve, err := a.proxmox()
	if err != nil || pve == nil {
		return err
	}
	services, err := a.q.ListRegisteredProxmoxServices(ctx)
	if err != nil {
		return err
	}
	for _, svc := range services {
		ref, err := jobs.ProxmoxRef(&svc)
		if err != nil {
			continue
		}
		log := a.log.With("service_id", svc.ID, "provider", proxmox.Provider, "node", ref.Node, "vmid", ref.VMID)
		switch err := jobs.ClaimVM(ctx, pve, ref, svc.ID, nil); {
		case err == nil:
			log.Info("registered VM carries its service's tag")
		case errors.Is(err, jobs.ErrVMTaken), errors.Is(err, proxmox.ErrNotFound):
			log.Warn("registered VM is gone or another's; its service's next job will mark it needs_repair", "err", err)
		default:
			return fmt.Errorf("claim VM %d of service %s: %w", ref.VMID, svc.ID, err)
		}
	}
	return nil
}
