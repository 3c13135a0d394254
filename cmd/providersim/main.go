// Command providersim serves every provider simulator, each on its own
// address, for staging and for running workers against something that
// behaves like the real providers. `provisiond dev` embeds the same set.
//
// Configuration, from the environment (defaults in brackets):
//
//	PROXMOX_SIM_ADDR, PTERODACTYL_SIM_ADDR, TENANTOS_SIM_ADDR,
//	CLOUDFLARE_SIM_ADDR, OPENPROVIDER_SIM_ADDR, KOPIA_SIM_ADDR (SSH),
//	KOPIA_SIM_CONTROL_ADDR   listen addresses [127.0.0.1:8006 to 8011, 2222]
//	PROXMOX_TOKEN_ID, PROXMOX_TOKEN_SECRET, PROXMOX_CONSOLE_PASSWORD (root@pam's),
//	PTERODACTYL_APPLICATION_KEY,
//	PTERODACTYL_CLIENT_KEY, TENANTOS_KEY, CLOUDFLARE_TOKEN,
//	OPENPROVIDER_USER, OPENPROVIDER_PASSWORD, KOPIA_REPOSITORY_PASSWORD
//	                    the credentials each accepts [sims.Dev()]
//	KOPIA_AUTHORIZED_KEYS   file of SSH public keys that may log in [none]
//	SIM_TASK_DURATION   how long a provider task runs [2s]
//	SIM_SEED            seed of random faults [1]
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/adapters/sims"
)

// config is read from the environment; what is not set keeps the value
// of sims.Dev().
type config struct {
	Addrs                     sims.Addrs
	TaskDuration              time.Duration `env:"SIM_TASK_DURATION"`
	Seed                      uint64        `env:"SIM_SEED"`
	ProxmoxTokenID            string        `env:"PROXMOX_TOKEN_ID"`
	ProxmoxTokenSecret        string        `env:"PROXMOX_TOKEN_SECRET"`
	ProxmoxPassword           string        `env:"PROXMOX_CONSOLE_PASSWORD"`
	PterodactylApplicationKey string        `env:"PTERODACTYL_APPLICATION_KEY"`
	PterodactylClientKey      string        `env:"PTERODACTYL_CLIENT_KEY"`
	TenantosKey               string        `env:"TENANTOS_KEY"`
	CloudflareToken           string        `env:"CLOUDFLARE_TOKEN"`
	OpenProviderUser          string        `env:"OPENPROVIDER_USER"`
	OpenProviderPassword      string        `env:"OPENPROVIDER_PASSWORD"`
	KopiaRepositoryPassword   string        `env:"KOPIA_REPOSITORY_PASSWORD"`
	KopiaAuthorizedKeys       string        `env:"KOPIA_AUTHORIZED_KEYS"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil {
		log.Error("providersim", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	var c config
	if err := env.Parse(&c); err != nil {
		return err
	}
	keys, err := authorizedKeys(c.KopiaAuthorizedKeys)
	if err != nil {
		return err
	}
	cfg := sims.Dev()
	set(&cfg.TaskDuration, c.TaskDuration)
	set(&cfg.Seed, c.Seed)
	for _, p := range [][2]*string{
		{&cfg.ProxmoxTokenID, &c.ProxmoxTokenID}, {&cfg.ProxmoxTokenSecret, &c.ProxmoxTokenSecret},
		{&cfg.ProxmoxPassword, &c.ProxmoxPassword},
		{&cfg.PterodactylApplicationKey, &c.PterodactylApplicationKey}, {&cfg.PterodactylClientKey, &c.PterodactylClientKey},
		{&cfg.TenantosKey, &c.TenantosKey}, {&cfg.CloudflareToken, &c.CloudflareToken},
		{&cfg.OpenProviderUser, &c.OpenProviderUser}, {&cfg.OpenProviderPassword, &c.OpenProviderPassword},
		{&cfg.KopiaRepositoryPassword, &c.KopiaRepositoryPassword},
	} {
		set(p[0], *p[1])
	}
	cfg.KopiaAuthorizedKeys = keys
	fleet, err := sims.New(cfg)
	if err != nil {
		return err
	}
	defer fleet.Close()
	eps, err := fleet.Listen(c.Addrs)
	if err != nil {
		return err
	}
	for _, ep := range eps {
		fmt.Printf("%-14s %s\n", ep.Name, ep.URL)
	}
	fmt.Printf("%-14s %s\n", "kopia host key", fleet.Kopia.KnownHostsLine(c.Addrs.Kopia))
	return sims.Serve(ctx, eps, fleet, log)
}

// set overwrites *dst with v unless v is the zero value.
func set[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// authorizedKeys reads an authorized_keys file; an empty path means none.
func authorizedKeys(path string) ([]ssh.PublicKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("KOPIA_AUTHORIZED_KEYS: %w", err)
	}
	var keys []ssh.PublicKey
	for len(b) > 0 {
		k, _, _, rest, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			break
		}
		keys, b = append(keys, k), rest
	}
	return keys, nil
}
