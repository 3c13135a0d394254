// Package sims runs every provider simulator together with its demo data,
// each on its own address, for `provisiond dev` and cmd/providersim.
package sims

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	cloudflare "github.com/hostfleet/provisiond/adapters/cloudflare/sim"
	kopia "github.com/hostfleet/provisiond/adapters/kopia/sim"
	openprovider "github.com/hostfleet/provisiond/adapters/openprovider/sim"
	proxmox "github.com/hostfleet/provisiond/adapters/proxmox/sim"
	pterodactyl "github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	tenantos "github.com/hostfleet/provisiond/adapters/tenantos/sim"
)

// Config holds the credentials each simulator accepts and how fast they run.
type Config struct {
	// TaskDuration is how long a provider task (a Proxmox UPID, a power
	// change, an install) takes.
	TaskDuration time.Duration
	// Seed seeds every simulator's random faults.
	Seed uint64

	ProxmoxTokenID, ProxmoxTokenSecret string
	// ProxmoxPassword is root@pam's password, for ticket logins (consoles).
	ProxmoxPassword           string
	PterodactylApplicationKey string
	// PterodactylClientKey belongs to the demo panel's admin (user 1).
	PterodactylClientKey    string
	TenantosKey             string
	CloudflareToken         string
	OpenProviderUser        string
	OpenProviderPassword    string
	KopiaAuthorizedKeys     []ssh.PublicKey
	KopiaRepositoryPassword string
}

// Dev returns the development credentials: known to everyone, fit only
// for simulators and demo data. `provisiond dev` uses them for both the
// simulators and the adapters that talk to them.
func Dev() Config {
	return Config{
		TaskDuration:              2 * time.Second,
		Seed:                      1,
		ProxmoxTokenID:            "root@pam!provisiond",
		ProxmoxTokenSecret:        "devsecret",
		ProxmoxPassword:           "dev-proxmox-password",
		PterodactylApplicationKey: "ptla_devapplicationkey0000000000000000000000",
		PterodactylClientKey:      "ptlc_devclientkey000000000000000000000000000",
		TenantosKey:               "tenantos-dev-key",
		CloudflareToken:           "dev-cloudflare-token-000000000000000000000000",
		OpenProviderUser:          "provisiond",
		OpenProviderPassword:      "dev-openprovider-password",
		KopiaRepositoryPassword:   "dev-kopia-repository-password",
	}
}

// Addrs are the listen addresses, one per simulator, read from the
// environment variables their tags name. Kopia's control endpoints (HTTP)
// listen apart from its SSH server.
type Addrs struct {
	Proxmox      string `env:"PROXMOX_SIM_ADDR" envDefault:"127.0.0.1:8006"`
	Pterodactyl  string `env:"PTERODACTYL_SIM_ADDR" envDefault:"127.0.0.1:8007"`
	Tenantos     string `env:"TENANTOS_SIM_ADDR" envDefault:"127.0.0.1:8008"`
	Cloudflare   string `env:"CLOUDFLARE_SIM_ADDR" envDefault:"127.0.0.1:8009"`
	OpenProvider string `env:"OPENPROVIDER_SIM_ADDR" envDefault:"127.0.0.1:8010"`
	KopiaControl string `env:"KOPIA_SIM_CONTROL_ADDR" envDefault:"127.0.0.1:8011"`
	Kopia        string `env:"KOPIA_SIM_ADDR" envDefault:"127.0.0.1:2222"`
}

// Fleet is the running set of simulators.
type Fleet struct {
	Proxmox      *proxmox.Server
	Pterodactyl  *pterodactyl.Server
	Tenantos     *tenantos.Server
	Kopia        *kopia.Server
	Cloudflare   *cloudflare.Server
	OpenProvider *openprovider.Server
}

// New makes every simulator and loads its demo data.
func New(cfg Config) (*Fleet, error) {
	f := &Fleet{
		Proxmox: proxmox.New(proxmox.Config{TokenID: cfg.ProxmoxTokenID, TokenSecret: cfg.ProxmoxTokenSecret,
			Password: cfg.ProxmoxPassword, TaskDuration: cfg.TaskDuration, Seed: cfg.Seed}),
		Pterodactyl: pterodactyl.New(pterodactyl.Config{
			ApplicationKeys: []string{cfg.PterodactylApplicationKey},
			ClientKeys:      map[string]int{cfg.PterodactylClientKey: 1},
			TaskDuration:    cfg.TaskDuration, InstallDuration: 3 * cfg.TaskDuration, Seed: cfg.Seed,
			AllowedOrigins: []string{"*"},
		}),
		Tenantos: tenantos.New(tenantos.Config{APIKeys: []string{cfg.TenantosKey},
			TaskDuration: cfg.TaskDuration, InstallDuration: 5 * cfg.TaskDuration, Seed: cfg.Seed}),
		Kopia: kopia.New(kopia.Config{AuthorizedKeys: cfg.KopiaAuthorizedKeys, Password: cfg.KopiaRepositoryPassword,
			SnapshotDuration: cfg.TaskDuration, Seed: cfg.Seed, Files: kopia.DemoFiles()}),
		Cloudflare: cloudflare.New(cloudflare.Config{Tokens: map[string][]string{cfg.CloudflareToken: {cloudflare.AllZones}},
			Seed: cfg.Seed}),
		OpenProvider: openprovider.New(openprovider.Config{Username: cfg.OpenProviderUser, Password: cfg.OpenProviderPassword,
			RegistrationDuration: cfg.TaskDuration, Seed: cfg.Seed}),
	}
	for _, vm := range proxmox.DemoVMs() {
		f.Proxmox.AddVM(vm)
	}
	for _, g := range pterodactyl.DemoServers() {
		if _, err := f.Pterodactyl.AddServer(g); err != nil {
			f.Close()
			return nil, fmt.Errorf("pterodactyl demo server %q: %w", g.Name, err)
		}
	}
	for _, m := range tenantos.DemoServers() {
		f.Tenantos.AddServer(m)
	}
	if err := f.Kopia.SeedDemo("provisiond"); err != nil {
		f.Close()
		return nil, fmt.Errorf("kopia demo repository: %w", err)
	}
	for _, z := range cloudflare.DemoZones() {
		id := f.Cloudflare.AddZone(z.Name)
		for _, r := range z.Records {
			if _, err := f.Cloudflare.AddRecord(id, r); err != nil {
				f.Close()
				return nil, fmt.Errorf("cloudflare demo record %s: %w", r.Name, err)
			}
		}
	}
	f.OpenProvider.Load(openprovider.DemoData())
	return f, nil
}

// Close stops every simulator's tasks and releases hung calls.
func (f *Fleet) Close() {
	f.Proxmox.Close()
	f.Pterodactyl.Close()
	f.Tenantos.Close()
	f.Kopia.Close()
	f.Cloudflare.Close()
	f.OpenProvider.Close()
}

// Endpoint is one simulator's listener and what it serves.
type Endpoint struct {
	Name string
	// URL is where clients reach it: http://host:port/base or ssh://host:port.
	URL string
	ln  net.Listener
	h   http.Handler // nil for the SSH server
}

// Listen opens every address, so that a port in use fails at once, and
// returns the endpoints in a fixed order.
func (f *Fleet) Listen(a Addrs) ([]Endpoint, error) {
	specs := []struct {
		name, addr, base string
		h                http.Handler
	}{
		{"proxmox", a.Proxmox, "/api2/json", f.Proxmox},
		{"pterodactyl", a.Pterodactyl, "", f.Pterodactyl},
		{"tenantos", a.Tenantos, "/api", f.Tenantos},
		{"cloudflare", a.Cloudflare, "/client/v4", f.Cloudflare},
		{"openprovider", a.OpenProvider, "/v1beta", f.OpenProvider},
		{"kopia-control", a.KopiaControl, "", f.Kopia.ControlHandler()},
		{"kopia", a.Kopia, "", nil},
	}
	var eps []Endpoint
	for _, s := range specs {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, ep := range eps {
				ep.ln.Close()
			}
			return nil, fmt.Errorf("%s simulator: %w", s.name, err)
		}
		url := "http://" + ln.Addr().String() + s.base
		if s.h == nil {
			url = "ssh://" + ln.Addr().String()
		}
		eps = append(eps, Endpoint{Name: s.name, URL: url, ln: ln, h: s.h})
	}
	return eps, nil
}

// Serve serves the endpoints until ctx ends.
func Serve(ctx context.Context, eps []Endpoint, f *Fleet, log *slog.Logger) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, ep := range eps {
		if ep.h == nil {
			g.Go(func() error {
				go func() { <-ctx.Done(); ep.ln.Close() }()
				if err := f.Kopia.Serve(ep.ln); err != nil && ctx.Err() == nil {
					return fmt.Errorf("kopia simulator: %w", err)
				}
				return nil
			})
			continue
		}
		srv := &http.Server{Handler: ep.h, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.With("simulator", ep.Name).Handler(), slog.LevelWarn)}
		g.Go(func() error {
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if srv.Shutdown(shutdown) != nil {
					srv.Close()
				}
			}()
			if err := srv.Serve(ep.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s simulator: %w", ep.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}
