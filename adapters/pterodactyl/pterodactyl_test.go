package pterodactyl_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const (
	appKey    = "ptla_app00000000000000000000000000000000000000"
	clientKey = "ptlc_admin000000000000000000000000000000000000" // user 1, a root admin
	taskTime  = 20 * time.Millisecond
)

// panel is a simulator with the demo panel and servers behind a client:
// 1 (alice's, running), 2 (alice's, offline, backup limit 1), 3 (bob's,
// suspended), and 10 (alice's, offline, backup limit 60).
type panel struct {
	sim *sim.Server
	url string
	c   *pterodactyl.Client
	// ids maps each server's numeric id to its identifier.
	ids map[int]string
}

// newPanel serves a simulator whose installs take a minute, so that a
// server stays "installing" for as long as a test looks, and whose other
// tasks take taskTime.
func newPanel(t *testing.T, opts ...func(*sim.Config)) *panel {
	t.Helper()
	cfg := sim.Config{ApplicationKeys: []string{appKey}, ClientKeys: map[string]int{clientKey: 1},
		TaskDuration: taskTime, InstallDuration: time.Minute, Seed: 1}
	for _, o := range opts {
		o(&cfg)
	}
	s := sim.New(cfg)
	servers := append(sim.DemoServers(), sim.GameServer{ID: 10, Name: "Hoarder", OwnerID: 2, AllocationID: 5, EggID: 1,
		Limits: sim.Limits{Memory: 1024, Disk: 4096, IO: 500}, FeatureLimits: sim.FeatureLimits{Backups: 60}})
	p := &panel{sim: s, ids: map[int]string{}}
	for _, g := range servers {
		added, err := s.AddServer(g)
		if err != nil {
			t.Fatal(err)
		}
		p.ids[added.ID] = added.Identifier
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	p.url = ts.URL
	p.c = p.client(t, nil)
	return p
}

// client returns a client of the panel with the test keys, changed by mod.
func (p *panel) client(t *testing.T, mod func(*pterodactyl.Config)) *pterodactyl.Client {
	t.Helper()
	cfg := pterodactyl.Config{URL: p.url, ApplicationKey: appKey, ClientKey: clientKey, RequestTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := pterodactyl.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// server reads a server from the simulator, failing when it is gone.
func (p *panel) server(t *testing.T, id int) sim.GameServer {
	t.Helper()
	g, ok := p.sim.Server(id)
	if !ok {
		t.Fatalf("server %d is gone", id)
	}
	return g
}

// completedBackup creates a backup on the server and waits until it ends.
func completedBackup(t *testing.T, p *panel, identifier string) pterodactyl.Backup {
	t.Helper()
	ctx := context.Background()
	b, err := p.c.CreateBackup(ctx, identifier, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	adaptertest.Eventually(t, "the backup to complete", func() bool {
		b, err = p.c.Backup(ctx, identifier, b.UUID)
		return err == nil && b.CompletedAt != nil
	})
	return b
}

// paperServer is a valid NewServer for a Paper server of alice's on
// allocation 3.
func paperServer() pterodactyl.NewServer {
	return pterodactyl.NewServer{
		Name: "Hardcore", ExternalID: "order-42", User: 2, Egg: 1,
		DockerImage: "ghcr.io/pterodactyl/yolks:java_21", Startup: "java -jar {{SERVER_JARFILE}}",
		Environment:   map[string]string{"SERVER_JARFILE": "paper.jar", "BUILD_NUMBER": "latest"},
		Limits:        pterodactyl.Limits{Memory: 2048, Disk: 10240, CPU: 100},
		FeatureLimits: pterodactyl.FeatureLimits{Allocations: 1, Backups: 2},
		Allocation:    3,
	}
}

func TestApplicationCallsChangeThePanel(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, p *panel)
	}{
		{"create on an allocation", func(t *testing.T, p *panel) {
			s, err := p.c.CreateServer(ctx, paperServer())
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != "installing" || s.Container.Installed || s.Allocation != 3 || len(s.Identifier) != 8 ||
				s.Limits.IO != 500 || s.Limits.OOMDisabled || s.ExternalID != "order-42" {
				t.Errorf("created %+v", s)
			}
			g := p.server(t, s.ID)
			if g.Name != "Hardcore" || g.OwnerID != 2 || g.AllocationID != 3 || g.Limits.Memory != 2048 || g.Limits.OOMDisabled ||
				g.Environment["SERVER_JARFILE"] != "paper.jar" || g.Image != "ghcr.io/pterodactyl/yolks:java_21" {
				t.Errorf("panel has %+v", g)
			}
		}},
		{"create by deployment", func(t *testing.T, p *panel) {
			ns := paperServer()
			ns.Allocation, ns.Deploy = 0, &pterodactyl.Deploy{Locations: []int{1}, PortRange: []string{"25570-25574"}}
			s, err := p.c.CreateServer(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			// Allocation 6 is the first free one on 25570-25574.
			if s.Allocation != 6 || p.server(t, s.ID).AllocationID != 6 {
				t.Errorf("deployed on allocation %d, want 6", s.Allocation)
			}
		}},
		{"read by id", func(t *testing.T, p *panel) {
			s, err := p.c.Server(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			want := pterodactyl.Limits{Memory: 4096, Disk: 20480, IO: 500, CPU: 200}
			if s.Name != "Survival" || s.ExternalID != "demo-mc-1" || s.Identifier != p.ids[1] || s.User != 2 || s.Egg != 1 ||
				s.Nest != 1 || s.Node != 1 || s.Allocation != 1 || s.Status != "" || s.Suspended || s.Limits != want ||
				s.FeatureLimits != (pterodactyl.FeatureLimits{Databases: 1, Allocations: 2, Backups: 3}) || !s.Container.Installed {
				t.Errorf("server %+v", s)
			}
			// Egg variables, and the panel's own numbers as text.
			if env := s.Container.Environment; env["SERVER_JARFILE"] != "server.jar" || env["P_SERVER_ALLOCATION_LIMIT"] != "2" {
				t.Errorf("environment %v", env)
			}
		}},
		{"read by external id", func(t *testing.T, p *panel) {
			s, err := p.c.ServerByExternalID(ctx, "demo-valheim-1")
			if err != nil {
				t.Fatal(err)
			}
			if s.ID != 3 || s.Status != "suspended" || !s.Suspended {
				t.Errorf("server %+v", s)
			}
		}},
		{"update build", func(t *testing.T, p *panel) {
			limits := pterodactyl.Limits{Memory: 8192, Swap: -1, Disk: 40960, IO: 700, CPU: 300, Threads: "0-1", OOMDisabled: true}
			s, err := p.c.UpdateBuild(ctx, 2, pterodactyl.Build{Allocation: 2, Limits: limits,
				FeatureLimits: pterodactyl.FeatureLimits{Databases: 2, Allocations: 3, Backups: 5}, AddAllocations: []int{4}})
			if err != nil {
				t.Fatal(err)
			}
			if s.Limits != limits || s.FeatureLimits.Backups != 5 {
				t.Errorf("answer %+v", s)
			}
			g := p.server(t, 2)
			if g.Limits != (sim.Limits{Memory: 8192, Swap: -1, Disk: 40960, IO: 700, CPU: 300, Threads: "0-1", OOMDisabled: true}) ||
				g.FeatureLimits != (sim.FeatureLimits{Databases: 2, Allocations: 3, Backups: 5}) {
				t.Errorf("panel has %+v %+v", g.Limits, g.FeatureLimits)
			}
			allocs, err := p.c.Allocations(ctx, p.ids[2])
			if err != nil || len(allocs) != 2 || allocs[1].ID != 4 || allocs[1].Default {
				t.Errorf("allocations %+v, %v: want 2 and a second 4", allocs, err)
			}
		}},
		{"update startup", func(t *testing.T, p *panel) {
			env := map[string]string{"MINECRAFT_VERSION": "1.20.4", "SERVER_JARFILE": "paper.jar", "BUILD_NUMBER": "42"}
			_, err := p.c.UpdateStartup(ctx, 2, pterodactyl.Startup{Egg: 1, Environment: env,
				Startup: "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}", Image: "ghcr.io/pterodactyl/yolks:java_17"})
			if err != nil {
				t.Fatal(err)
			}
			g := p.server(t, 2)
			if g.Startup != "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}" || g.Image != "ghcr.io/pterodactyl/yolks:java_17" ||
				g.Environment["MINECRAFT_VERSION"] != "1.20.4" || g.Environment["BUILD_NUMBER"] != "42" {
				t.Errorf("panel has %+v", g)
			}
		}},
		{"update startup keeps what is left empty", func(t *testing.T, p *panel) {
			before := p.server(t, 2)
			env := map[string]string{"SERVER_JARFILE": "paper.jar", "BUILD_NUMBER": "latest"}
			if _, err := p.c.UpdateStartup(ctx, 2, pterodactyl.Startup{Egg: 1, Environment: env}); err != nil {
				t.Fatal(err)
			}
			if g := p.server(t, 2); g.Startup != before.Startup || g.Image != before.Image || g.Environment["SERVER_JARFILE"] != "paper.jar" {
				t.Errorf("panel has %+v", g)
			}
		}},
		{"reinstall", func(t *testing.T, p *panel) {
			if err := p.c.Reinstall(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if g := p.server(t, 2); g.Status != sim.StatusInstalling {
				t.Errorf("status %q, want installing", g.Status)
			}
		}},
		{"suspend", func(t *testing.T, p *panel) {
			if err := p.c.Suspend(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if g := p.server(t, 1); g.Status != sim.StatusSuspended || g.State != sim.StateOffline {
				t.Errorf("status %q state %q, want suspended and offline", g.Status, g.State)
			}
		}},
		{"unsuspend", func(t *testing.T, p *panel) {
			if err := p.c.Unsuspend(ctx, 3); err != nil {
				t.Fatal(err)
			}
			if g := p.server(t, 3); g.Status != "" {
				t.Errorf("status %q, want none", g.Status)
			}
		}},
		{"delete", func(t *testing.T, p *panel) {
			if err := p.c.DeleteServer(ctx, 2, false); err != nil {
				t.Fatal(err)
			}
			if _, ok := p.sim.Server(2); ok || p.sim.CountCalls("servers.delete", "2") != 1 {
				t.Error("server 2 was not deleted with a plain delete")
			}
		}},
		{"force delete", func(t *testing.T, p *panel) {
			if err := p.c.DeleteServer(ctx, 2, true); err != nil {
				t.Fatal(err)
			}
			if _, ok := p.sim.Server(2); ok || p.sim.CountCalls("servers.forcedelete", "2") != 1 {
				t.Error("server 2 was not deleted with a forced delete")
			}
		}},
		{"egg with variables", func(t *testing.T, p *panel) {
			e, err := p.c.Egg(ctx, 2, 2)
			if err != nil {
				t.Fatal(err)
			}
			if e.ID != 2 || e.Nest != 2 || e.Name != "Valheim" || e.DockerImage != "ghcr.io/parkervcp/yolks:debian" ||
				e.DockerImages["Debian"] != e.DockerImage || !strings.HasPrefix(e.Startup, "./valheim_server") || len(e.Variables) != 4 {
				t.Fatalf("egg %+v", e)
			}
			want := pterodactyl.Variable{Name: "Public", Description: "List the server publicly.", EnvVariable: "PUBLIC",
				DefaultValue: "1", Rules: "required|in:0,1"}
			if e.Variables[3] != want {
				t.Errorf("variable %+v, want %+v", e.Variables[3], want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newPanel(t)) })
	}
}

func TestClientCallsChangeTheServer(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opts []func(*sim.Config)
		run  func(t *testing.T, p *panel)
	}{
		{"resources of a running server", nil, func(t *testing.T, p *panel) {
			r, err := p.c.Resources(ctx, p.ids[1])
			if err != nil {
				t.Fatal(err)
			}
			if r.State != "running" || r.Suspended || r.MemoryBytes != 4096<<20*2/5 || r.CPUAbsolute != 12.5 ||
				r.DiskBytes != 256<<20 || r.NetworkRxBytes < 2048 || r.UptimeMs < 0 {
				t.Errorf("resources %+v", r)
			}
		}},
		{"resources of a suspended server", nil, func(t *testing.T, p *panel) {
			r, err := p.c.Resources(ctx, p.ids[3])
			if err != nil {
				t.Fatal(err)
			}
			if r.State != "offline" || !r.Suspended {
				t.Errorf("resources %+v", r)
			}
		}},
		{"start", nil, func(t *testing.T, p *panel) {
			if err := p.c.Power(ctx, p.ids[2], "start"); err != nil {
				t.Fatal(err)
			}
			adaptertest.Eventually(t, "server 2 running", func() bool { return p.server(t, 2).State == sim.StateRunning })
		}},
		{"kill", nil, func(t *testing.T, p *panel) {
			if err := p.c.Power(ctx, p.ids[1], "kill"); err != nil {
				t.Fatal(err)
			}
			if g := p.server(t, 1); g.State != sim.StateOffline {
				t.Errorf("state %q, want offline", g.State)
			}
		}},
		{"command", nil, func(t *testing.T, p *panel) {
			if err := p.c.Command(ctx, p.ids[1], "say hello"); err != nil {
				t.Fatal(err)
			}
			calls := p.sim.Calls()
			if last := calls[len(calls)-1]; last.Op != "client.command" || last.Status != http.StatusNoContent {
				t.Errorf("last call %+v, want an accepted command", last)
			}
		}},
		{"websocket credentials", nil, func(t *testing.T, p *panel) {
			token, socket, err := p.c.WebsocketCredentials(ctx, p.ids[1])
			if err != nil {
				t.Fatal(err)
			}
			uuid := p.server(t, 1).UUID
			if want := strings.Replace(p.url, "http", "ws", 1) + "/api/servers/" + uuid + "/ws"; socket != want {
				t.Errorf("socket %q, want %q", socket, want)
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil || claims["server_uuid"] != uuid {
				t.Errorf("token claims %v, %v: want server_uuid %s", claims, err, uuid)
			}
		}},
		{"startup variables", nil, func(t *testing.T, p *panel) {
			vars, err := p.c.StartupVariables(ctx, p.ids[1])
			if err != nil {
				t.Fatal(err)
			}
			want := pterodactyl.Variable{Name: "Build Number", Description: "The build number for the paper release.",
				EnvVariable: "BUILD_NUMBER", DefaultValue: "latest", ServerValue: "latest", UserViewable: true,
				Rules: "required|string|max:20"}
			if len(vars) != 3 || vars[2] != want || vars[1].ServerValue != "server.jar" || !vars[1].UserEditable {
				t.Errorf("variables %+v", vars)
			}
		}},
		{"set startup variable", nil, func(t *testing.T, p *panel) {
			v, err := p.c.SetStartupVariable(ctx, p.ids[1], "MINECRAFT_VERSION", "1.21")
			if err != nil {
				t.Fatal(err)
			}
			if v.EnvVariable != "MINECRAFT_VERSION" || v.ServerValue != "1.21" || p.server(t, 1).Environment["MINECRAFT_VERSION"] != "1.21" {
				t.Errorf("variable %+v, panel %v", v, p.server(t, 1).Environment)
			}
		}},
		{"allocations", nil, func(t *testing.T, p *panel) {
			allocs, err := p.c.Allocations(ctx, p.ids[1])
			if err != nil {
				t.Fatal(err)
			}
			want := []pterodactyl.Allocation{{ID: 1, IP: "10.0.1.10", Port: 25565, Default: true}}
			if !slices.Equal(allocs, want) {
				t.Errorf("allocations %+v, want %+v", allocs, want)
			}
		}},
		{"create backup", nil, func(t *testing.T, p *panel) {
			b, err := p.c.CreateBackup(ctx, p.ids[1], "nightly")
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != "nightly" || b.CompletedAt != nil || b.Successful || b.CreatedAt.IsZero() {
				t.Errorf("new backup %+v", b)
			}
			if got := p.sim.Backups(1); len(got) != 1 || got[0].UUID != b.UUID {
				t.Fatalf("panel has backups %+v", got)
			}
			done := completedBackup(t, p, p.ids[1])
			if !done.Successful || !strings.HasPrefix(done.Checksum, "sha1:") || done.Bytes == 0 || done.CompletedAt.Before(done.CreatedAt) {
				t.Errorf("completed backup %+v", done)
			}
		}},
		{"list backups over pages", nil, func(t *testing.T, p *panel) {
			var made []string
			for i := range 55 {
				b, err := p.c.CreateBackup(ctx, p.ids[10], fmt.Sprintf("b%02d", i))
				if err != nil {
					t.Fatal(err)
				}
				made = append(made, b.UUID)
			}
			got, err := p.c.Backups(ctx, p.ids[10])
			if err != nil {
				t.Fatal(err)
			}
			var uuids []string
			for _, b := range got {
				uuids = append(uuids, b.UUID)
			}
			if !slices.Equal(uuids, made) {
				t.Errorf("listed %d backups, want the %d made in order", len(uuids), len(made))
			}
			if n := p.sim.CountCalls("backups.list", ""); n != 2 {
				t.Errorf("%d list calls, want 2 pages", n)
			}
		}},
		// Restores take long enough here to see the server restoring.
		{"restore backup", []func(*sim.Config){func(c *sim.Config) { c.TaskDuration = 500 * time.Millisecond }}, func(t *testing.T, p *panel) {
			b := completedBackup(t, p, p.ids[1])
			if err := p.c.RestoreBackup(ctx, p.ids[1], b.UUID, true); err != nil {
				t.Fatal(err)
			}
			if g := p.server(t, 1); g.Status != sim.StatusRestoringBackup {
				t.Errorf("status %q, want restoring_backup", g.Status)
			}
			adaptertest.Eventually(t, "the restore to end", func() bool { return p.server(t, 1).Status == "" })
		}},
		{"delete backup", nil, func(t *testing.T, p *panel) {
			b := completedBackup(t, p, p.ids[1])
			if err := p.c.DeleteBackup(ctx, p.ids[1], b.UUID); err != nil {
				t.Fatal(err)
			}
			if got := p.sim.Backups(1); len(got) != 0 {
				t.Errorf("panel still has %+v", got)
			}
		}},
		{"download url", nil, func(t *testing.T, p *panel) {
			b := completedBackup(t, p, p.ids[1])
			u, err := p.c.BackupDownloadURL(ctx, p.ids[1], b.UUID)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), b.UUID) {
				t.Errorf("download: %d %q", res.StatusCode, body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newPanel(t, tt.opts...)) })
	}
}

func TestMissingThingsWrapErrNotFound(t *testing.T) {
	ctx := context.Background()
	const noBackup = "00000000-0000-4000-8000-000000000000"
	tests := []struct {
		name string
		call func(p *panel) error
	}{
		{"server", func(p *panel) error { _, err := p.c.Server(ctx, 99); return err }},
		{"external id", func(p *panel) error { _, err := p.c.ServerByExternalID(ctx, "order-404"); return err }},
		{"empty external id", func(p *panel) error { _, err := p.c.ServerByExternalID(ctx, ""); return err }},
		{"build", func(p *panel) error {
			_, err := p.c.UpdateBuild(ctx, 99, pterodactyl.Build{Allocation: 9, Limits: pterodactyl.Limits{Memory: 1}})
			return err
		}},
		{"reinstall", func(p *panel) error { return p.c.Reinstall(ctx, 99) }},
		{"suspend", func(p *panel) error { return p.c.Suspend(ctx, 99) }},
		{"delete", func(p *panel) error { return p.c.DeleteServer(ctx, 99, false) }},
		{"force delete", func(p *panel) error { return p.c.DeleteServer(ctx, 99, true) }},
		{"egg of another nest", func(p *panel) error { _, err := p.c.Egg(ctx, 1, 2); return err }},
		{"client server", func(p *panel) error { _, err := p.c.Resources(ctx, "deadbeef"); return err }},
		{"backup", func(p *panel) error { _, err := p.c.Backup(ctx, p.ids[1], noBackup); return err }},
		{"backup delete", func(p *panel) error { return p.c.DeleteBackup(ctx, p.ids[1], noBackup) }},
		{"backup download", func(p *panel) error { _, err := p.c.BackupDownloadURL(ctx, p.ids[1], noBackup); return err }},
	}
	p := newPanel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(p)
			if !errors.Is(err, pterodactyl.ErrNotFound) || !failure.IsPermanent(err) {
				t.Errorf("err = %v, want a permanent ErrNotFound", err)
			}
		})
	}
}

func TestValidationErrorsKeepThePanelsWording(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(p *panel) error
		want []string
	}{
		{"create without name and with a bad io weight", func(p *panel) error {
			ns := paperServer()
			ns.Name, ns.Limits.IO = "", 5
			_, err := p.c.CreateServer(ctx, ns)
			return err
		}, []string{"The name field is required.", "The limits.io must be between 10 and 1000."}},
		{"create with a variable its rules refuse", func(p *panel) error {
			ns := paperServer()
			ns.Environment["SERVER_JARFILE"] = "server.zip"
			_, err := p.c.CreateServer(ctx, ns)
			return err
		}, []string{"The Server Jar File variable format is invalid."}},
		{"build with negative memory", func(p *panel) error {
			_, err := p.c.UpdateBuild(ctx, 1, pterodactyl.Build{Allocation: 1, Limits: pterodactyl.Limits{Memory: -5}})
			return err
		}, []string{"The limits.memory must be at least 0."}},
		{"startup variable its rules refuse", func(p *panel) error {
			_, err := p.c.SetStartupVariable(ctx, p.ids[1], "SERVER_JARFILE", "server.zip")
			return err
		}, []string{"The value format is invalid."}},
		{"unknown power signal", func(p *panel) error { return p.c.Power(ctx, p.ids[1], "explode") },
			[]string{"The selected signal is invalid."}},
	}
	p := newPanel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(p)
			if got := pterodactyl.ValidationErrors(err); !slices.Equal(got, tt.want) {
				t.Errorf("ValidationErrors = %q, want %q (err %v)", got, tt.want, err)
			}
			if fe := adaptertest.FailureOf(t, err, pterodactyl.Provider); fe.Class != failure.Permanent || fe.Status != http.StatusUnprocessableEntity ||
				fe.Message != strings.Join(tt.want, " ") {
				t.Errorf("failure %+v, want a permanent 422 saying %q", fe, tt.want)
			}
		})
	}
}

func TestValidationErrorsIsNilForOtherErrors(t *testing.T) {
	p := newPanel(t)
	_, err := p.c.Server(context.Background(), 99)
	if got := pterodactyl.ValidationErrors(err); got != nil {
		t.Errorf("ValidationErrors of a 404 = %q, want nil", got)
	}
}

func TestStateConflictsAreTransientOnlyWhenTheyClear(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		call  func(t *testing.T, p *panel) error
		class failure.Class
		msg   string
	}{
		{"installing", func(_ *testing.T, p *panel) error {
			if err := p.c.Reinstall(ctx, 2); err != nil {
				return err
			}
			return p.c.Power(ctx, p.ids[2], "start")
		}, failure.Transient, "This server has not yet completed its installation process, please try again later."},
		{"suspended", func(t *testing.T, p *panel) error { return p.c.Power(ctx, p.ids[3], "start") },
			failure.Permanent, "This server is currently suspended and the functionality requested is unavailable."},
		// The panel refuses a server whose install failed in the words it
		// uses for one installing; its status tells them apart.
		{"install failed", func(t *testing.T, p *panel) error {
			p.markInstallFailed(t, 2)
			return p.c.Power(ctx, p.ids[2], "start")
		}, failure.Permanent, pterodactyl.InstallFailedMessage},
		{"install failed, on any client call", func(t *testing.T, p *panel) error {
			p.markInstallFailed(t, 2)
			_, err := p.c.Backups(ctx, p.ids[2])
			return err
		}, failure.Permanent, pterodactyl.InstallFailedMessage},
		{"install failed, status unreadable", func(t *testing.T, p *panel) error {
			p.markInstallFailed(t, 2)
			p.sim.Inject(simkit.Fault{Op: "servers.list", Times: 1, Status: 503})
			return p.c.Power(ctx, p.ids[2], "start")
		}, failure.Transient, "This server has not yet completed its installation process, please try again later."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := adaptertest.FailureOf(t, tt.call(t, newPanel(t)), pterodactyl.Provider)
			if fe.Class != tt.class || fe.Status != http.StatusConflict || fe.Message != tt.msg {
				t.Errorf("failure %+v, want a %v 409 saying %q", fe, tt.class, tt.msg)
			}
		})
	}
}

// markInstallFailed leaves a server as a failed install does.
func (p *panel) markInstallFailed(t *testing.T, id int) {
	t.Helper()
	if err := p.sim.SetStatus(id, sim.StatusInstallFailed); err != nil {
		t.Fatal(err)
	}
}

func TestServerByIdentifier(t *testing.T) {
	ctx := context.Background()
	p := newPanel(t)
	p.markInstallFailed(t, 2)
	s, err := p.c.ServerByIdentifier(ctx, p.ids[2])
	if err != nil || s.ID != 2 || s.Identifier != p.ids[2] || s.Status != pterodactyl.StatusInstallFailed {
		t.Fatalf("ServerByIdentifier(%s) = %+v, %v; want server 2, install_failed", p.ids[2], s, err)
	}
	if s, err := p.c.ServerByIdentifier(ctx, p.server(t, 2).UUID); err != nil || s.ID != 2 {
		t.Errorf("by uuid: %+v, %v", s, err)
	}
	for _, id := range []string{"", p.ids[2][:4], "0000ffff"} {
		if _, err := p.c.ServerByIdentifier(ctx, id); !errors.Is(err, pterodactyl.ErrNotFound) || !failure.IsPermanent(err) {
			t.Errorf("ServerByIdentifier(%q): %v, want a permanent not found", id, err)
		}
	}
}

func TestServersReadsEveryPage(t *testing.T) {
	ctx := context.Background()
	const bulk = perPageInTest + 5
	p := newPanel(t, func(cfg *sim.Config) {
		world := sim.DemoPanel()
		for i := range bulk {
			world.Allocations = append(world.Allocations, sim.Allocation{ID: 1000 + i, NodeID: 1, IP: "10.0.1.99", Port: 30000 + i})
		}
		cfg.Panel = &world
	})
	for i := range bulk {
		g, err := p.sim.AddServer(sim.GameServer{Name: fmt.Sprintf("bulk-%d", i), OwnerID: 2, EggID: 1, ExternalID: fmt.Sprintf("bulk-%d", i),
			AllocationID: 1000 + i, Limits: sim.Limits{Memory: 512, Disk: 1024, IO: 500}})
		if err != nil {
			t.Fatal(err)
		}
		p.ids[g.ID] = g.Identifier
	}
	servers, err := p.c.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, s := range servers {
		if seen[s.ID] || p.ids[s.ID] != s.Identifier {
			t.Errorf("server %d (%s) listed twice or unknown", s.ID, s.Identifier)
		}
		seen[s.ID] = true
	}
	if len(seen) != len(p.ids) {
		t.Errorf("listed %d servers, the panel has %d", len(seen), len(p.ids))
	}
}

// perPageInTest is the adapter's page size: more servers than that make the
// list span pages.
const perPageInTest = 50

func TestProviderTroubleIsTransient(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		fault simkit.Fault
		call  func(p *panel) error
		retry time.Duration
	}{
		{"500", simkit.Fault{Op: "servers.get", Status: 500},
			func(p *panel) error { _, err := p.c.Server(ctx, 1); return err }, 0},
		{"502 from the daemon", simkit.Fault{Op: "client.power", Status: 502},
			func(p *panel) error { return p.c.Power(ctx, p.ids[1], "stop") }, 0},
		{"503 with Retry-After", simkit.Fault{Op: "backups.list", Status: 503, RetryAfter: 30 * time.Second},
			func(p *panel) error { _, err := p.c.Backups(ctx, p.ids[1]); return err }, 30 * time.Second},
		{"429 with Retry-After", simkit.Fault{Op: "servers.create", Status: 429, RetryAfter: 7 * time.Second},
			func(p *panel) error { _, err := p.c.CreateServer(ctx, paperServer()); return err }, 7 * time.Second},
		{"429 rounds Retry-After up to seconds", simkit.Fault{Op: "backups.create", Status: 429, RetryAfter: 2500 * time.Millisecond},
			func(p *panel) error { _, err := p.c.CreateBackup(ctx, p.ids[1], ""); return err }, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			p.sim.Inject(tt.fault)
			fe := adaptertest.FailureOf(t, tt.call(p), pterodactyl.Provider)
			if fe.Class != failure.Transient || fe.Status != tt.fault.Status || fe.RetryAfter != tt.retry || fe.Message == "" {
				t.Errorf("failure %+v, want transient %d with RetryAfter %v", fe, tt.fault.Status, tt.retry)
			}
		})
	}
}

func TestDroppedConnectionIsTransient(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		op   string
		call func(p *panel) error
		// done says whether the call was carried out, as a dropped one is.
		done func(p *panel) bool
	}{
		{"answer cut in half", "servers.create",
			func(p *panel) error { _, err := p.c.CreateServer(ctx, paperServer()); return err },
			func(p *panel) bool { return len(p.sim.Servers()) == 5 }},
		{"no answer at all", "client.power",
			func(p *panel) error { return p.c.Power(ctx, p.ids[1], "kill") },
			func(p *panel) bool { g, _ := p.sim.Server(1); return g.State == sim.StateOffline }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPanel(t)
			p.sim.Inject(simkit.Fault{Op: tt.op, Times: 1, Drop: true})
			fe := adaptertest.FailureOf(t, tt.call(p), pterodactyl.Provider)
			if fe.Class != failure.Transient || fe.Status != 0 {
				t.Errorf("failure %+v, want transient without a status", fe)
			}
			if !tt.done(p) {
				t.Error("the dropped call was not carried out")
			}
		})
	}
}

func TestHungCallTimesOutTransient(t *testing.T) {
	p := newPanel(t)
	p.sim.Inject(simkit.Fault{Op: "client.resources", Hang: true})
	c := p.client(t, func(cfg *pterodactyl.Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	_, err := c.Resources(context.Background(), p.ids[1])
	if fe := adaptertest.FailureOf(t, err, pterodactyl.Provider); fe.Class != failure.Transient || fe.Status != 0 {
		t.Errorf("failure %+v, want transient without a status", fe)
	}
}

func TestCancelledCallIsNotAProviderFailure(t *testing.T) {
	p := newPanel(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.c.Server(ctx, 1)
	var fe *failure.Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &fe) {
		t.Errorf("err = %v, want context.Canceled unclassified", err)
	}
}

func TestBadKeysArePermanent(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mod    func(*pterodactyl.Config)
		call   func(c *pterodactyl.Client, p *panel) error
		status int
		msg    string
	}{
		{"unknown application key", func(c *pterodactyl.Config) { c.ApplicationKey = "ptla_wrong" },
			func(c *pterodactyl.Client, p *panel) error { _, err := c.Server(ctx, 1); return err },
			http.StatusUnauthorized, "Unauthenticated."},
		{"unknown client key", func(c *pterodactyl.Config) { c.ClientKey = "ptlc_wrong" },
			func(c *pterodactyl.Client, p *panel) error { _, err := c.Resources(ctx, p.ids[1]); return err },
			http.StatusUnauthorized, "Unauthenticated."},
		{"application key on the client API", func(c *pterodactyl.Config) { c.ClientKey = appKey },
			func(c *pterodactyl.Client, p *panel) error { _, err := c.Resources(ctx, p.ids[1]); return err },
			http.StatusForbidden, "You are attempting to use an application API key on an endpoint that requires a client API key."},
	}
	p := newPanel(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := adaptertest.FailureOf(t, tt.call(p.client(t, tt.mod), p), pterodactyl.Provider)
			if fe.Class != failure.Permanent || fe.Status != tt.status || fe.Message != tt.msg {
				t.Errorf("failure %+v, want permanent %d saying %q", fe, tt.status, tt.msg)
			}
		})
	}
}

func TestErrorsNeverCarryKeys(t *testing.T) {
	ctx := context.Background()
	const badApp, badClient = "ptla_secret_app_key_not_accepted", "ptlc_secret_client_key_not_accepted"
	p := newPanel(t)
	bad := p.client(t, func(c *pterodactyl.Config) { c.ApplicationKey, c.ClientKey = badApp, badClient })
	slow := p.client(t, func(c *pterodactyl.Config) { c.RequestTimeout = 50 * time.Millisecond })
	p.sim.Inject(simkit.Fault{Op: "servers.get", Target: "2", Status: 500},
		simkit.Fault{Op: "backups.list", Drop: true}, simkit.Fault{Op: "client.allocations", Hang: true})
	calls := []func() error{
		func() error { _, err := bad.Server(ctx, 1); return err },
		func() error { _, err := bad.Resources(ctx, p.ids[1]); return err },
		func() error { _, err := p.c.Server(ctx, 99); return err },
		func() error { _, err := p.c.Server(ctx, 2); return err },
		func() error { return p.c.Power(ctx, p.ids[1], "explode") },
		func() error { _, err := p.c.Backups(ctx, p.ids[1]); return err },
		func() error { _, err := slow.Allocations(ctx, p.ids[1]); return err },
	}
	for i, call := range calls {
		err := call()
		if err == nil {
			t.Fatalf("call %d succeeded", i)
		}
		text := fmt.Sprintf("%v %+v %s", err, err, failure.UserMessage(err))
		for _, key := range []string{appKey, clientKey, badApp, badClient, "Bearer"} {
			if strings.Contains(text, key) {
				t.Errorf("call %d: error %q carries %q", i, text, key)
			}
		}
	}
}

// observation is one ObserveProviderCall.
type observation struct {
	provider, op string
	failed       bool
}

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recorder) ObserveProviderCall(provider, op string, err error, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{provider, op, err != nil})
}

func TestObserverSeesEveryRequest(t *testing.T) {
	p := newPanel(t)
	rec := &recorder{}
	c, err := pterodactyl.New(pterodactyl.Config{URL: p.url, ApplicationKey: appKey, ClientKey: clientKey}, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.Server(ctx, 1)
	c.Server(ctx, 99)
	c.Power(ctx, p.ids[1], "kill")
	want := []observation{{"pterodactyl", "servers.get", false}, {"pterodactyl", "servers.get", true},
		{"pterodactyl", "client.power", false}}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.obs, want) {
		t.Errorf("observed %+v, want %+v", rec.obs, want)
	}
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	full := pterodactyl.Config{URL: "https://panel.example.test", ApplicationKey: appKey, ClientKey: clientKey}
	tests := []struct {
		name string
		mod  func(*pterodactyl.Config)
	}{
		{"no URL", func(c *pterodactyl.Config) { c.URL = "" }},
		{"URL without scheme", func(c *pterodactyl.Config) { c.URL = "panel.example.test" }},
		{"no application key", func(c *pterodactyl.Config) { c.ApplicationKey = "" }},
		{"no client key", func(c *pterodactyl.Config) { c.ClientKey = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := full
			tt.mod(&cfg)
			if _, err := pterodactyl.New(cfg, nil); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

func TestRedirectIsPermanentAndNotFollowed(t *testing.T) {
	p := newPanel(t)
	// A front that moves every call elsewhere, as an http:// URL of an
	// https:// panel does.
	front := httptest.NewServer(http.RedirectHandler(p.url+"/api/application/servers/1", http.StatusMovedPermanently))
	t.Cleanup(front.Close)
	c := p.client(t, func(c *pterodactyl.Config) { c.URL = front.URL })
	_, err := c.Server(context.Background(), 1)
	fe := adaptertest.FailureOf(t, err, pterodactyl.Provider)
	if fe.Class != failure.Permanent || fe.Status != http.StatusMovedPermanently || !strings.Contains(fe.Message, p.url) {
		t.Errorf("failure %+v, want a permanent 301 naming where it leads", fe)
	}
	if n := p.sim.CountCalls("servers.get", ""); n != 0 {
		t.Errorf("the redirect was followed: %d calls reached the panel", n)
	}
}
