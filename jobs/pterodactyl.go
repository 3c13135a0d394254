package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/queries"
)

// This file is the Pterodactyl provider: GameWorkers implements Provider
// and its capabilities; its job kinds (game.*) live in game.go.

// Name implements Provider.
func (w *GameWorkers) Name() string { return pterodactyl.Provider }

// Title implements Provider.
func (w *GameWorkers) Title() string { return "Pterodactyl" }

// AddWorkers implements WorkerSet: the game server job kinds.
func (w *GameWorkers) AddWorkers(ws *Workers) {
	AddWorker(ws, WorkFunc[GameProvisionArgs](w.Provision))
	AddWorker(ws, WorkFunc[GameReinstallArgs](w.Reinstall))
	AddWorker(ws, WorkFunc[GameChangePlanArgs](w.ChangePlan))
	AddWorker(ws, WorkFunc[GameBackupArgs](w.Backup))
}

// PowerActions implements PowerController: game servers have no reset
// (a restart or a kill is the nearest).
func (w *GameWorkers) PowerActions() []string {
	return slices.DeleteFunc(slices.Clone(PowerActions), func(a string) bool { return a == "reset" })
}

// Power implements PowerController for game servers: signals through the
// client API, suspension through the application API. It waits until the
// server reaches the state the action leads to.
func (w *GameWorkers) Power(ctx context.Context, job *Job[PowerArgs]) error {
	ref, err := PterodactylRef(job.Service)
	if err != nil {
		return err
	}
	action := job.Args.Action
	want := gameStates[action]
	err = job.Steps(ctx, Step{action, func(ctx context.Context) error {
		switch action {
		case "suspend":
			return w.Pterodactyl.Suspend(ctx, ref.ServerID)
		case "resume":
			return w.Pterodactyl.Unsuspend(ctx, ref.ServerID)
		}
		return powerGame(ctx, job.Run, w.Pterodactyl, ref.Identifier, action, w.pollInterval())
	}})
	if err != nil {
		return err
	}
	return recordPower(ctx, w.Queries, job, map[string]string{"running": "running", "offline": "stopped"}[want])
}

// gameStatesRecorded maps the panel's settled power states to the
// service's; starting and stopping are left for the next round.
var gameStatesRecorded = map[string]string{"running": "running", "offline": "stopped"}

// Verify implements Verifier: the game server must be the service's own, in
// the service's suspension, installed, and with the plan's limits.
func (w *GameWorkers) Verify(ctx context.Context, svc *queries.Service, _ *slog.Logger) ([]Drift, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return nil, nil // never provisioned: nothing to compare
	}
	srv, err := w.Pterodactyl.Server(ctx, ref.ServerID)
	switch {
	case errors.Is(err, pterodactyl.ErrNotFound):
		return []Drift{{Kind: DriftMissing, Detail: fmt.Sprintf("game server %d no longer exists on the panel; terminate the service or order it again", ref.ServerID)}}, nil
	case err != nil:
		return nil, err
	case srv.ExternalID != svc.ID.String():
		return []Drift{{Kind: DriftForeign, Detail: fmt.Sprintf("game server %d is not this service's (its external id is %q); nothing was changed", ref.ServerID, srv.ExternalID)}}, nil
	}
	var drift []Drift
	switch {
	case svc.Status == "suspended" && !srv.Suspended:
		drift = append(drift, Drift{Kind: DriftSuspension, Detail: "the service is suspended but its game server is not; suspend it again (POST /action suspend)"})
	case svc.Status != "suspended" && srv.Suspended:
		drift = append(drift, Drift{Kind: DriftSuspension, Detail: "the game server is suspended on the panel but the service is not; resume it (POST /action resume)"})
	}
	switch srv.Status {
	case pterodactyl.StatusInstallFailed, pterodactyl.StatusReinstallFailed:
		drift = append(drift, Drift{Kind: DriftInstall, Detail: "the game server's install failed (" + srv.Status + "); a reinstall repairs it"})
	case "", pterodactyl.StatusSuspended:
		if res, err := w.Pterodactyl.Resources(ctx, ref.Identifier); err != nil {
			return nil, err
		} else if got := gameStatesRecorded[res.State]; got != "" && got != svc.PowerState {
			if err := w.Queries.FollowPowerState(ctx, queries.FollowPowerStateParams{ID: svc.ID, PowerState: got, Was: svc.PowerState}); err != nil {
				return nil, fmt.Errorf("record power state: %w", err)
			}
			drift = append(drift, Drift{Kind: DriftPower, Fixed: true,
				Detail: fmt.Sprintf("recorded %s, the game server is %s; the record now follows the server", svc.PowerState, got)})
		}
	}
	if plan, err := GameServicePlan(svc); err == nil {
		want, _ := plan.limits()
		var diffs []string
		for _, l := range []struct {
			name      string
			got, want int
		}{{"memory", srv.Limits.Memory, want.Memory}, {"disk", srv.Limits.Disk, want.Disk}, {"cpu", srv.Limits.CPU, want.CPU}} {
			if l.got != l.want {
				diffs = append(diffs, fmt.Sprintf("%s %d (plan %d)", l.name, l.got, l.want))
			}
		}
		if len(diffs) > 0 {
			drift = append(drift, Drift{Kind: DriftPlan, Detail: "the game server has " + strings.Join(diffs, ", ") + "; a plan change applies the plan"})
		}
	}
	return drift, nil
}

// Resource implements Verifier: the panel's server id.
func (w *GameWorkers) Resource(svc *queries.Service) (string, bool) {
	ref, err := PterodactylRef(svc)
	return strconv.Itoa(ref.ServerID), err == nil
}

// Marked implements Verifier: the game servers whose external id is a
// service's. The panel keeps external ids unique, and only the fleet sets
// them to a service's id: the mark is proof enough.
func (w *GameWorkers) Marked(ctx context.Context, log *slog.Logger) ([]Marked, error) {
	servers, err := w.Pterodactyl.Servers(ctx)
	if err != nil {
		return nil, err
	}
	var found []Marked
	for _, srv := range servers {
		id, err := uuid.Parse(srv.ExternalID)
		if err != nil {
			continue
		}
		found = append(found, Marked{Resource: strconv.Itoa(srv.ID),
			Name: fmt.Sprintf("pterodactyl server %d", srv.ID), Service: id,
			Log:    log.With("service_id", id, "provider", pterodactyl.Provider, "server", srv.ID),
			Delete: func(ctx context.Context) error { return w.deleteMarked(ctx, srv.ID, id) },
		})
	}
	return found, nil
}

// deleteMarked deletes a game server after checking, once more, that
// its external id is the service's.
func (w *GameWorkers) deleteMarked(ctx context.Context, id int, service uuid.UUID) error {
	srv, err := w.Pterodactyl.Server(ctx, id)
	if err != nil {
		return err
	}
	if srv.ExternalID != service.String() {
		return fmt.Errorf("game server %d no longer carries the external id %s", id, service)
	}
	err = w.Pterodactyl.DeleteServer(ctx, id, false)
	if errors.Is(err, pterodactyl.ErrNotFound) {
		return nil
	}
	return err
}

// UsageGroup implements UsageReader: game servers are read one at a time.
func (w *GameWorkers) UsageGroup(svc *queries.Service) string {
	if ref, err := PterodactylRef(svc); err == nil && ref.Node != 0 {
		return strconv.Itoa(ref.Node)
	}
	return ""
}

// Usage implements UsageReader: Wings is asked for each server's
// resources, a few at a time.
func (w *GameWorkers) Usage(ctx context.Context, _ string, svcs []queries.Service) (map[uuid.UUID]Usage, error) {
	out := make([]Usage, len(svcs))
	read := make([]bool, len(svcs))
	errs := make([]error, len(svcs))
	var g errgroup.Group
	g.SetLimit(usageConcurrency)
	for i, s := range svcs {
		ref, err := PterodactylRef(&s)
		if err != nil {
			continue
		}
		plan, _ := GameServicePlan(&s)
		g.Go(func() error {
			r, err := w.Pterodactyl.Resources(ctx, ref.Identifier)
			switch {
			case errors.Is(err, pterodactyl.ErrNotFound):
				read[i] = true // gone from the panel: not running, as a VM gone from its node
				return nil
			case err != nil:
				// Installing or restoring (409) or unreachable: no sample.
				errs[i] = fmt.Errorf("service %s: %w", s.ID, err)
				return nil
			}
			// An unlimited plan (0) has no share to speak of; its CPU is
			// measured against one core.
			read[i] = true
			out[i] = Usage{Online: r.State == "running", CPU: percent(r.CPUAbsolute, float64(cmp.Or(plan.CPU, 100))),
				Memory: percent(r.MemoryBytes, float64(plan.MemoryMB)*(1<<20)),
				Disk:   percent(float64(r.DiskBytes), float64(plan.DiskMB)*(1<<20)),
				NetIn:  r.NetworkRxBytes, NetOut: r.NetworkTxBytes}
			return nil
		})
	}
	_ = g.Wait() // the readings fail one by one, in errs
	usage := make(map[uuid.UUID]Usage, len(svcs))
	for i, s := range svcs {
		if read[i] {
			usage[s.ID] = out[i]
		}
	}
	return usage, errors.Join(errs...)
}

// usageConcurrency bounds the panel calls one usage read makes at once.
const usageConcurrency = 8
