package sims_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/adapters/sims"
)

// TestEverySimulatorAnswersOnItsAddress starts the fleet on free ports and
// makes one authenticated call to each simulator.
func TestEverySimulatorAnswersOnItsAddress(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sims.Config{
		TaskDuration: 10 * time.Millisecond, Seed: 1,
		ProxmoxTokenID: "root@pam!t", ProxmoxTokenSecret: "s",
		PterodactylApplicationKey: "ptla_test", PterodactylClientKey: "ptlc_test",
		TenantosKey: "tenantos-test", CloudflareToken: strings.Repeat("c", 40),
		OpenProviderUser: "u", OpenProviderPassword: "p",
		KopiaAuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}, KopiaRepositoryPassword: "repo-pass",
	}
	fleet, err := sims.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	any := "127.0.0.1:0"
	eps, err := fleet.Listen(sims.Addrs{Proxmox: any, Pterodactyl: any, Tenantos: any, Cloudflare: any,
		OpenProvider: any, Kopia: any, KopiaControl: any})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sims.Serve(ctx, eps, fleet, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	url := map[string]string{}
	for _, ep := range eps {
		url[ep.Name] = ep.URL
	}
	tests := []struct {
		name, path string
		header     [2]string
	}{
		{"proxmox", "/version", [2]string{"Authorization", "PVEAPIToken=root@pam!t=s"}},
		{"pterodactyl", "/api/application/servers", [2]string{"Authorization", "Bearer ptla_test"}},
		{"tenantos", "/servers", [2]string{"Authorization", "Bearer tenantos-test"}},
		{"cloudflare", "/zones", [2]string{"Authorization", "Bearer " + strings.Repeat("c", 40)}},
		{"kopia-control", "/_sim/snapshots", [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url[tt.name]+tt.path, nil)
			req.Header.Set("Accept", "application/json")
			if tt.header[0] != "" {
				req.Header.Set(tt.header[0], tt.header[1])
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d, want 200", tt.path, res.StatusCode)
			}
		})
	}
	t.Run("openprovider", func(t *testing.T) {
		res, err := http.Post(url["openprovider"]+"/auth/login", "application/json",
			strings.NewReader(`{"username":"u","password":"p","ip":"0.0.0.0"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("login: %d, want 200", res.StatusCode)
		}
	})
	t.Run("kopia", func(t *testing.T) {
		addr := strings.TrimPrefix(url["kopia"], "ssh://")
		client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "provisiond",
			Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(fleet.Kopia.HostKey())})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		out, err := sess.Output("kopia snapshot list --json")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "[") {
			t.Errorf("snapshot list: %q, %v", out, err)
		}
	})
}

func TestStateOutlivesARestart(t *testing.T) {
	cfg := sims.Dev()
	cfg.TaskDuration = 10 * time.Millisecond
	dir := t.TempDir()
	first, err := sims.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vm, _ := first.Proxmox.VM("pve1", 100)
	vm.VMID, vm.Name = 150, "made-in-the-first-run"
	first.Proxmox.AddVM(vm)
	games := len(first.Pterodactyl.Servers())
	if err := first.SaveState(dir); err != nil {
		t.Fatal(err)
	}
	first.Close()

	for _, tc := range []struct {
		name   string
		dir    string
		loaded bool
		vm150  bool
	}{
		{"a saved state is loaded", dir, true, true},
		{"no state starts from the demo data", t.TempDir(), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, err := sims.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close()
			loaded, err := next.LoadState(tc.dir)
			if err != nil || loaded != tc.loaded {
				t.Fatalf("LoadState: %v, %v; want %v", loaded, err, tc.loaded)
			}
			if _, ok := next.Proxmox.VM("pve1", 150); ok != tc.vm150 {
				t.Errorf("VM 150 there: %v, want %v", ok, tc.vm150)
			}
			if n := len(next.Pterodactyl.Servers()); n != games {
				t.Errorf("%d game servers, want %d", n, games)
			}
		})
	}
}
