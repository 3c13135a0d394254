package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/hostfleet/provisiond/adapters/sims"
	"github.com/hostfleet/provisiond/adapters/webhook"
)

// Config is read from the environment; README.md lists every variable. The
// defaults suit `make run` on one machine.
type Config struct {
	DatabaseURL      string `env:"DATABASE_URL" envDefault:"postgres://provisiond@127.0.0.1:55433/provisiond?sslmode=disable"`
	DatabaseMaxConns int    `env:"DATABASE_MAX_CONNS" envDefault:"32"`
	RedisAddr        string `env:"REDIS_ADDR" envDefault:"127.0.0.1:56380"`
	RedisPassword    string `env:"REDIS_PASSWORD"`
	RedisDB          int    `env:"REDIS_DB" envDefault:"0"`

	HTTPAddr    string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	MetricsAddr string `env:"METRICS_ADDR" envDefault:"127.0.0.1:9091"`
	LogFormat   string `env:"LOG_FORMAT" envDefault:"json"`
	LogLevel    string `env:"LOG_LEVEL" envDefault:"info"`

	RateLimit         int      `env:"API_RATE_LIMIT" envDefault:"100"`
	TrustedProxies    []string `env:"TRUSTED_PROXIES" envSeparator:","`
	SecretsKey        string   `env:"SECRETS_KEY"`
	OperatorUser      string   `env:"OPERATOR_USER" envDefault:"operator"`
	OperatorPassword  string   `env:"OPERATOR_PASSWORD"`
	DashboardReadOnly bool     `env:"DASHBOARD_READ_ONLY" envDefault:"false"`

	ProxmoxURL             string        `env:"PROXMOX_URL" envDefault:"http://127.0.0.1:8006/api2/json"`
	ProxmoxTokenID         string        `env:"PROXMOX_TOKEN_ID" envDefault:"root@pam!provisiond"`
	ProxmoxTokenSecret     string        `env:"PROXMOX_TOKEN_SECRET"`
	ProxmoxCAFile          string        `env:"PROXMOX_CA_FILE"`
	ProxmoxRequestTimeout  time.Duration `env:"PROXMOX_REQUEST_TIMEOUT" envDefault:"30s"`
	ProxmoxPollInterval    time.Duration `env:"PROXMOX_POLL_INTERVAL" envDefault:"1s"`
	ProxmoxLocations       string        `env:"PROXMOX_LOCATIONS"`
	ProxmoxStorage         string        `env:"PROXMOX_STORAGE"`
	ProxmoxBackupStorage   string        `env:"PROXMOX_BACKUP_STORAGE" envDefault:"local"`
	ProxmoxRescueISO       string        `env:"PROXMOX_RESCUE_ISO" envDefault:"local:iso/rescue.iso"`
	ProxmoxConsoleUser     string        `env:"PROXMOX_CONSOLE_USER"`
	ProxmoxConsolePassword string        `env:"PROXMOX_CONSOLE_PASSWORD"`
	ConsoleSessionTTL      time.Duration `env:"CONSOLE_SESSION_TTL" envDefault:"1m"`
	ProxmoxAgentTimeout    time.Duration `env:"PROXMOX_AGENT_TIMEOUT" envDefault:"3m"`

	PterodactylURL            string        `env:"PTERODACTYL_URL"`
	PterodactylApplicationKey string        `env:"PTERODACTYL_APPLICATION_KEY"`
	PterodactylClientKey      string        `env:"PTERODACTYL_CLIENT_KEY"`
	PterodactylRequestTimeout time.Duration `env:"PTERODACTYL_REQUEST_TIMEOUT" envDefault:"30s"`
	PterodactylPollInterval   time.Duration `env:"PTERODACTYL_POLL_INTERVAL" envDefault:"2s"`

	TenantosURL            string        `env:"TENANTOS_URL"`
	TenantosAPIKey         string        `env:"TENANTOS_API_KEY"`
	TenantosRequestTimeout time.Duration `env:"TENANTOS_REQUEST_TIMEOUT" envDefault:"30s"`
	TenantosPollInterval   time.Duration `env:"TENANTOS_POLL_INTERVAL" envDefault:"5s"`
	TenantosPoolTags       []string      `env:"TENANTOS_POOL_TAGS" envDefault:"For Rent" envSeparator:","`
	TenantosPoolUser       int           `env:"TENANTOS_POOL_USER"`
	TenantosWipeProfile    int           `env:"TENANTOS_WIPE_PROFILE"`

	WorkerConcurrency    int           `env:"WORKER_CONCURRENCY" envDefault:"500"`
	WorkerQueues         string        `env:"WORKER_QUEUES" envDefault:"critical=6,default=3,low=1"`
	RetryBase            time.Duration `env:"JOB_RETRY_BASE" envDefault:"2s"`
	RetryMax             time.Duration `env:"JOB_RETRY_MAX" envDefault:"10m"`
	JobRetention         time.Duration `env:"JOB_RETENTION" envDefault:"24h"`
	ShutdownTimeout      time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`
	PowerShutdownTimeout time.Duration `env:"POWER_SHUTDOWN_TIMEOUT" envDefault:"60s"`

	SweepInterval time.Duration `env:"SWEEP_INTERVAL" envDefault:"30s"`
	SweepGrace    time.Duration `env:"SWEEP_GRACE" envDefault:"2m"`
	CancelGrace   time.Duration `env:"CANCEL_GRACE" envDefault:"48h"`

	ReconcileInterval time.Duration `env:"RECONCILE_INTERVAL" envDefault:"10m"`
	OrphanGrace       time.Duration `env:"ORPHAN_GRACE" envDefault:"24h"`

	AlertInterval      time.Duration `env:"ALERT_INTERVAL" envDefault:"1m"`
	AlertBatchSize     int           `env:"ALERT_BATCH_SIZE" envDefault:"200"`
	SampleRetention    time.Duration `env:"SAMPLE_RETENTION" envDefault:"168h"`
	WebhookTimeout     time.Duration `env:"WEBHOOK_TIMEOUT" envDefault:"10s"`
	WebhookAllowedNets []string      `env:"WEBHOOK_ALLOWED_NETS" envSeparator:","`

	Sims            sims.Addrs    `envPrefix:""`
	SimTaskDuration time.Duration `env:"SIM_TASK_DURATION" envDefault:"2s"`
	SimStateDir     string        `env:"SIM_STATE_DIR" envDefault:".run/dev/sims"`
}

// loadConfig reads the environment.
func loadConfig() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// queues parses WORKER_QUEUES ("name=weight,...").
func (c Config) queues() (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(c.WorkerQueues, ",") {
		name, weight, found := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(weight)
		if !found || name == "" || err != nil || n < 1 {
			return nil, fmt.Errorf("WORKER_QUEUES: %q is not name=weight", part)
		}
		out[name] = n
	}
	return out, nil
}

// proxmoxLocations parses PROXMOX_LOCATIONS ("fsn=pve1,pve2;nbg=pve3").
func (c Config) proxmoxLocations() (map[string][]string, error) {
	out := map[string][]string{}
	if strings.TrimSpace(c.ProxmoxLocations) == "" {
		return out, nil
	}
	for _, part := range strings.Split(c.ProxmoxLocations, ";") {
		name, nodes, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found || name == "" || nodes == "" {
			return nil, fmt.Errorf("PROXMOX_LOCATIONS: %q is not location=node,node", part)
		}
		for _, n := range strings.Split(nodes, ",") {
			out[name] = append(out[name], strings.TrimSpace(n))
		}
	}
	return out, nil
}

func (c Config) trustedProxies() ([]netip.Prefix, error) {
	return prefixes("TRUSTED_PROXIES", c.TrustedProxies)
}

// webhookGuard allows webhooks to every public address and to the
// networks of WEBHOOK_ALLOWED_NETS.
func (c Config) webhookGuard() (*webhook.Guard, error) {
	nets, err := prefixes("WEBHOOK_ALLOWED_NETS", c.WebhookAllowedNets)
	return &webhook.Guard{Allowed: nets}, err
}

func prefixes(name string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// logger builds the process logger from LOG_FORMAT and LOG_LEVEL.
func (c Config) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT must be json or text, not %q", c.LogFormat)
}
