package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/sims"
	tenantossim "github.com/hostfleet/provisiond/adapters/tenantos/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/sql/migrations"
	"github.com/hostfleet/provisiond/web/apikey"
)

// demoTeam owns the demo services and key that `dev` seeds.
const demoTeam = "demo"

// applyDevDefaults fills in what `dev` needs and production must set
// itself: readable logs, the simulator's token secret, an operator password.
func applyDevDefaults(c *Config) {
	if os.Getenv("LOG_FORMAT") == "" {
		c.LogFormat = "text"
	}
	if c.ProxmoxTokenSecret == "" {
		c.ProxmoxTokenSecret = sims.Dev().ProxmoxTokenSecret
	}
	if os.Getenv("PTERODACTYL_URL") == "" {
		dev := sims.Dev()
		c.PterodactylURL = "http://" + c.Sims.Pterodactyl
		c.PterodactylApplicationKey, c.PterodactylClientKey = dev.PterodactylApplicationKey, dev.PterodactylClientKey
	}
	if os.Getenv("TENANTOS_URL") == "" {
		c.TenantosURL, c.TenantosAPIKey = "http://"+c.Sims.Tenantos, sims.Dev().TenantosKey
		c.TenantosPollInterval, c.TenantosWipeProfile = time.Second, 20
	}
	if c.ProxmoxConsoleUser == "" {
		c.ProxmoxConsoleUser, c.ProxmoxConsolePassword = "root@pam", sims.Dev().ProxmoxPassword
	}
	if c.SecretsKey == "" {
		// Known to everyone, so fit only for demo data.
		sum := sha256.Sum256([]byte("provisiond dev secrets key"))
		c.SecretsKey = base64.StdEncoding.EncodeToString(sum[:])
	}
	if c.OperatorPassword == "" {
		c.OperatorPassword = rand.Text()[:16]
	}
	if os.Getenv("PROXMOX_URL") == "" {
		c.ProxmoxURL = "http://" + c.Sims.Proxmox + "/api2/json"
	}
}

// runDev runs everything in one process: the provider simulators, API,
// workers and scheduler, on a migrated database with demo data.
func runDev(ctx context.Context, a *app, out io.Writer) error {
	if err := migrations.Up(ctx, a.pool, a.log); err != nil {
		return err
	}
	simCfg := sims.Dev()
	simCfg.TaskDuration = a.cfg.SimTaskDuration
	simCfg.ProxmoxTokenID, simCfg.ProxmoxTokenSecret = a.cfg.ProxmoxTokenID, a.cfg.ProxmoxTokenSecret
	simCfg.ProxmoxPassword = a.cfg.ProxmoxConsolePassword
	fleet, err := devFleet(simCfg, a.cfg.SimStateDir, a.log)
	if err != nil {
		return err
	}
	defer fleet.Close()
	endpoints, err := fleet.Listen(a.cfg.Sims)
	if err != nil {
		return err
	}
	demo := sim.DemoVMs()
	apiLn, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sims.Serve(ctx, endpoints, fleet, a.log.With("component", "simulators")) })
	pve, err := a.proxmox()
	if err != nil {
		return err
	}
	keys, services, err := seedDemo(ctx, a.q, pve, demo, fleet.Proxmox.VMs())
	if err != nil {
		return err
	}
	bm, err := seedBareMetal(ctx, a.q, fleet.Tenantos)
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(services, func(s queries.Service) bool { return s.ID == bm.ID }); i >= 0 {
		services[i] = bm
	} else {
		services = append(services, bm)
	}

	api, err := a.apiHandler(ctx)
	if err != nil {
		return err
	}
	workers, handler, err := a.workers()
	if err != nil {
		return err
	}
	g.Go(func() error { return serveListener(ctx, apiLn, api, a.log) })
	g.Go(func() error { return runAsynq(ctx, workers, handler, a.log) })
	g.Go(func() error { a.sweeper().Run(ctx, a.cfg.SweepInterval); return nil })
	g.Go(func() error { return a.runPeriodic(ctx) })
	if dir := a.cfg.SimStateDir; dir != "" {
		g.Go(func() error { keepSimState(ctx, fleet, dir, a.log); return nil })
	}

	printBanner(out, a.cfg, "http://"+apiLn.Addr().String(), endpoints, keys, services)
	return g.Wait()
}

// devFleet makes the simulators and loads the state an earlier run kept in
// dir, so that the services in the database still point at their VMs and
// game servers. A state that cannot be read is left aside: the simulators
// start afresh with their demo data.
func devFleet(cfg sims.Config, dir string, log *slog.Logger) (*sims.Fleet, error) {
	fleet, err := sims.New(cfg)
	if err != nil || dir == "" {
		return fleet, err
	}
	loaded, err := fleet.LoadState(dir)
	switch {
	case err != nil:
		log.Warn("simulator state unreadable; the simulators start afresh", "dir", dir, "err", err)
		fleet.Close()
		return sims.New(cfg)
	case loaded:
		log.Info("simulator state of the last run loaded", "dir", dir)
	}
	return fleet, nil
}

// keepSimState saves the simulators' state every 30 seconds and when ctx
// ends, so that a stopped or killed dev run leaves at most 30 s behind.
func keepSimState(ctx context.Context, fleet *sims.Fleet, dir string, log *slog.Logger) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := fleet.SaveState(dir); err != nil {
				log.Error("simulator state not saved", "dir", dir, "err", err)
			}
			return
		case <-t.C:
			if err := fleet.SaveState(dir); err != nil {
				log.Warn("simulator state not saved", "dir", dir, "err", err)
			}
		}
	}
}

// seedDemo makes the demo team and a service for each demo VM, once, and a
// demo key when the team has no usable one. The demo services' power state
// follows the simulator's VMs (current). It returns the new key ("" when
// one existed) and the demo services.
func seedDemo(ctx context.Context, q *queries.Queries, pve *proxmox.Client, vms, current []sim.VM) (demoKeys, []queries.Service, error) {
	var keys demoKeys
	team, err := ensureTeam(ctx, q, demoTeam)
	if err != nil {
		return keys, nil, err
	}
	services, err := q.ListTeamServices(ctx, queries.ListTeamServicesParams{TeamID: team.ID, Limit: 100})
	if err != nil {
		return keys, nil, err
	}
	if len(services) == 0 {
		for _, vm := range vms {
			if vm.Template {
				continue
			}
			ref, _ := json.Marshal(map[string]any{"node": vm.Node, "vmid": vm.VMID})
			plan, _ := json.Marshal(map[string]int{"cores": vm.Cores, "memoryMb": vm.MemoryMB, "diskGb": vm.DiskGB})
			svc, err := q.CreateService(ctx, queries.CreateServiceParams{
				TeamID: team.ID, Name: vm.Name, Provider: "proxmox", Location: "dev",
				ProviderRef: ref, Plan: plan, Status: "active",
			})
			if err != nil {
				return keys, nil, fmt.Errorf("demo service: %w", err)
			}
			services = append(services, svc)
		}
	}
	// Registered VMs carry their service's tag and their VMID is reserved
	// (every time: the simulator may have started afresh).
	for _, svc := range services {
		ref, err := jobs.ProxmoxRef(&svc)
		if err != nil {
			continue
		}
		if _, err := q.ReserveVMID(ctx, queries.ReserveVMIDParams{Vmid: int32(ref.VMID), ServiceID: svc.ID}); err != nil {
			return keys, nil, fmt.Errorf("demo VMID: %w", err)
		}
		if err := jobs.ClaimVM(ctx, pve, ref, svc.ID, nil); err != nil && !errors.Is(err, proxmox.ErrNotFound) {
			return keys, nil, fmt.Errorf("demo VM %d: %w", ref.VMID, err)
		}
	}
	// The simulator may have started afresh; the services follow it.
	for i, svc := range services {
		for _, vm := range current {
			var ref struct{ VMID int }
			if json.Unmarshal(svc.ProviderRef, &ref) == nil && ref.VMID == vm.VMID {
				state := vm.Status
				if vm.Paused {
					state = "paused"
				}
				if err := q.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: svc.ID, PowerState: state}); err != nil {
					return keys, nil, err
				}
				services[i].PowerState = state
			}
		}
	}
	keys.Team, err = demoKey(ctx, q, apikey.Spec{TeamID: team.ID, Name: "demo"})
	if err != nil {
		return keys, services, err
	}
	platform, err := ensureTeam(ctx, q, platformTeam)
	if err != nil {
		return keys, services, err
	}
	keys.Platform, err = demoKey(ctx, q, apikey.Spec{TeamID: platform.ID, Name: "demo-platform", Platform: true})
	return keys, services, err
}

// demoBareMetal is the demo team's bare-metal service and the rented demo
// server it holds.
const (
	demoBareMetal       = "bm-1"
	demoBareMetalServer = 2
)

// seedBareMetal gives the demo team the rented demo server as a bare-metal
// service, once, and marks the server as the service's (every time: the
// simulator may have started afresh). Servers 1 and 3 stay in the pool for
// services a platform key orders.
func seedBareMetal(ctx context.Context, q *queries.Queries, panel *tenantossim.Server) (queries.Service, error) {
	team, err := ensureTeam(ctx, q, demoTeam)
	if err != nil {
		return queries.Service{}, err
	}
	services, err := q.ListTeamServices(ctx, queries.ListTeamServicesParams{TeamID: team.ID, Limit: 1000})
	if err != nil {
		return queries.Service{}, err
	}
	i := slices.IndexFunc(services, func(s queries.Service) bool { return s.Provider == jobs.ProviderTenantos && s.Name == demoBareMetal })
	var svc queries.Service
	if i >= 0 {
		svc = services[i]
	} else {
		ref, _ := json.Marshal(jobs.BareMetalRef{ServerID: demoBareMetalServer})
		if svc, err = q.CreateService(ctx, queries.CreateServiceParams{TeamID: team.ID, Name: demoBareMetal, Provider: jobs.ProviderTenantos,
			Location: "dev", ProviderRef: ref, Plan: []byte("{}"), Status: "active"}); err != nil {
			return svc, fmt.Errorf("demo bare-metal service: %w", err)
		}
	}
	m, ok := panel.Server(demoBareMetalServer)
	if !ok {
		return svc, nil
	}
	if mark := jobs.ServiceMark(svc.ID); !slices.Contains(m.Tags, mark) {
		m.Tags = append(m.Tags, mark)
		panel.AddServer(m)
	}
	svc.PowerState = map[string]string{"online": "running", "offline": "stopped"}[m.Power]
	return svc, q.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: svc.ID, PowerState: svc.PowerState})
}

// demoKeys are the keys seedDemo made: the demo team's and a platform key
// (to register and provision services); "" for one made in an earlier run,
// which was shown then.
type demoKeys struct{ Team, Platform string }

// demoKey makes the key of spec unless an active one of its name exists.
func demoKey(ctx context.Context, q *queries.Queries, spec apikey.Spec) (string, error) {
	n, err := q.CountActiveAPIKeysNamed(ctx, queries.CountActiveAPIKeysNamedParams{TeamID: spec.TeamID, Name: spec.Name})
	if err != nil || n > 0 {
		return "", err
	}
	key, _, err := apikey.Create(ctx, q, spec)
	return key, err
}

func printBanner(out io.Writer, cfg Config, api string, endpoints []sims.Endpoint, keys demoKeys, services []queries.Service) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nprovisiond dev is running\n\n")
	fmt.Fprintf(&b, "  API                 %s/api/ping\n", api)
	fmt.Fprintf(&b, "  queue dashboard     %s/monitoring/queues/  (user %q, password %q)\n", api, cfg.OperatorUser, cfg.OperatorPassword)
	fmt.Fprintf(&b, "  metrics             %s/metrics\n", api)
	fmt.Fprintf(&b, "  simulators          (calls and faults under /_sim/ of each)\n")
	for _, ep := range endpoints {
		fmt.Fprintf(&b, "    %-17s %s\n", ep.Name, ep.URL)
	}
	fmt.Fprintf(&b, "  database            %s\n\n", redactURL(cfg.DatabaseURL))
	if keys.Team != "" {
		fmt.Fprintf(&b, "  demo API key, team %s (shown once; only its hash is kept):\n\n    %s\n\n", demoTeam, keys.Team)
	} else {
		fmt.Fprintf(&b, "  the demo API key was shown when it was made; make another with\n")
		fmt.Fprintf(&b, "    DATABASE_URL='%s' .run/provisiond keys create --team %s\n\n", redactURL(cfg.DatabaseURL), demoTeam)
	}
	if keys.Platform != "" {
		fmt.Fprintf(&b, "  platform key, to register and provision services for any team (shown once):\n\n    %s\n\n", keys.Platform)
	} else {
		fmt.Fprintf(&b, "  the platform key was shown when it was made; make another with\n")
		fmt.Fprintf(&b, "    DATABASE_URL='%s' .run/provisiond keys create --platform\n\n", redactURL(cfg.DatabaseURL))
	}
	fmt.Fprintf(&b, "  demo services:\n")
	for _, s := range services {
		fmt.Fprintf(&b, "    %s  %-14s %s\n", s.ID, s.Name, s.PowerState)
	}
	if len(services) > 0 {
		k := keys.Team
		if k == "" {
			k = "$KEY"
		}
		fmt.Fprintf(&b, "\n  try:\n    curl -s -X POST -H 'x-api-key: %s' %s/api/services/%s/action -d '{\"action\":\"restart\"}'\n", k, api, services[0].ID)
		fmt.Fprintf(&b, "    curl -s -H 'x-api-key: %s' %s/api/jobs/<job id>\n", k, api)
	}
	fmt.Fprintln(out, b.String())
}

// redactURL hides a password in a database URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable DATABASE_URL)"
	}
	return u.Redacted()
}
