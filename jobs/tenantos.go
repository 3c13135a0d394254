package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/tenantos"
	"github.com/hostfleet/provisiond/queries"
)

// This file is the Tenantos provider: BareMetalWorkers implements Provider
// and its capabilities; its job kinds (baremetal.*) live in baremetal.go.

// ProviderTenantos is the bare-metal provider's name.
const ProviderTenantos = tenantos.Provider

// Name implements Provider.
func (w *BareMetalWorkers) Name() string { return tenantos.Provider }

// Title implements Provider.
func (w *BareMetalWorkers) Title() string { return "Tenantos" }

// AddWorkers implements WorkerSet: the bare-metal job kinds.
func (w *BareMetalWorkers) AddWorkers(ws *Workers) {
	AddWorker(ws, WorkFunc[BareMetalProvisionArgs](w.Provision))
	AddWorker(ws, WorkFunc[BareMetalReinstallArgs](w.Reinstall))
	AddWorker(ws, WorkFunc[BareMetalRescueArgs](w.Rescue))
}

// PowerActions implements PowerController: a bare-metal server's power is
// its BMC's, so there is nothing gentler than cutting it: stop and kill
// both power off, restart is a power cycle.
func (w *BareMetalWorkers) PowerActions() []string { return PowerActions }

// bareMetalPower maps a power action to Tenantos' method and the power
// state it leads to.
var bareMetalPower = map[string]struct{ method, want string }{
	"start":   {tenantos.PowerOn, "online"},
	"stop":    {tenantos.PowerOff, "offline"},
	"kill":    {tenantos.PowerOff, "offline"},
	"restart": {tenantos.PowerCycle, "online"},
	"reset":   {tenantos.PowerReset, "online"},
}

// powerStates maps Tenantos' power states to the service's.
var powerStates = map[string]string{"online": "running", "offline": "stopped"}

// Power implements PowerController. Suspension suspends the server for its
// owner at Tenantos and powers it off; resuming lifts it and powers it on.
// Each provider call is made once per step (remembered), and the job
// waits until the server is in the state the action leads to.
func (w *BareMetalWorkers) Power(ctx context.Context, job *Job[PowerArgs]) error {
	srv, err := w.ownServer(ctx, job.Service)
	if err != nil {
		return err
	}
	id := srv.ID
	once := func(key string, call func(ctx context.Context) error) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			var asked bool
			if _, err := job.Recall(key, &asked); err != nil || asked {
				return err
			}
			if err := call(ctx); err != nil {
				return err
			}
			return job.Remember(ctx, key, true)
		}
	}
	waitPower := func(want string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
				now, err := w.Tenantos.PowerStatus(ctx, id)
				return now == want, err
			})
		}
	}
	suspend := func(users []int, then string) func(ctx context.Context) error {
		return once("asked", func(ctx context.Context) error {
			_, err := w.Tenantos.UpdateServer(ctx, id, tenantos.ServerUpdate{SuspendUserIDs: &users, SuspendPowerAction: then})
			return err
		})
	}
	var steps []Step
	want := ""
	switch a := job.Args.Action; a {
	case "suspend":
		want = "offline"
		steps = []Step{{"suspend", suspend([]int{srv.UserID}, tenantos.PowerOff)}, {"off", waitPower(want)}}
	case "resume":
		want = "online"
		steps = []Step{{"unsuspend", suspend([]int{}, "none")},
			{"on", func(ctx context.Context) error {
				if err := once("asked", func(ctx context.Context) error { return w.Tenantos.Power(ctx, id, tenantos.PowerOn) })(ctx); err != nil {
					return err
				}
				return waitPower(want)(ctx)
			}}}
	default:
		p, ok := bareMetalPower[a]
		if !ok {
			return permanent(job.Args.Kind(), fmt.Sprintf("unknown power action %q", a))
		}
		want = p.want
		steps = []Step{{a, func(ctx context.Context) error {
			if err := once("asked", func(ctx context.Context) error { return w.Tenantos.Power(ctx, id, p.method) })(ctx); err != nil {
				return err
			}
			return waitPower(want)(ctx)
		}}}
	}
	if err := job.Steps(ctx, steps...); err != nil {
		return err
	}
	if a := job.Args.Action; a == "suspend" || a == "resume" {
		srv, err := w.Tenantos.Server(ctx, id)
		if err != nil {
			return err
		}
		if srv.Suspended != (a == "suspend") {
			return &StoppedError{Err: errChangeNotSeen, Condition: fmt.Sprintf("server %d: Tenantos does not show the %s", id, a)}
		}
	}
	return recordPower(ctx, w.Queries, job, powerStates[want])
}

// Terminate is the Tenantos Terminator: the server is checked to be the
// service's, its installs stopped, powered off, wiped when a wipe profile
// is configured, its addresses for the service removed, and it returns
// to the pool; the service is marked terminated, which frees its claim. A
// server no longer the service's is left alone.
func (w *BareMetalWorkers) Terminate(ctx context.Context, job *Job[TerminationArgs]) error {
	svc := job.Service
	if _, err := TenantosRef(svc); err == nil {
		// Once the release begins (the owner changes, the suspension
		// lifts, the wipe starts) it is carried through, never cancelled
		// halfway.
		job.CommitAt("release")
		err := job.Steps(ctx, Step{"release", func(ctx context.Context) error {
			srv, err := w.ownServer(ctx, svc)
			if errors.Is(err, ErrNeedsRepair) {
				job.Log.Warn("the service's server is gone or not its own; it is left alone", "err", err)
				return nil
			}
			if err != nil {
				return err
			}
			did, err := w.release(ctx, svc, srv, job.Run)
			if err == nil {
				job.Log.Info("server returned to the pool", "server", srv.ID, "done", did)
			}
			return err
		}})
		if err != nil {
			return err
		}
	}
	return w.Queries.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: svc.ID, Status: "terminated"})
}

// Verify implements Verifier: the server must exist, carry the service's
// mark, be suspended as the service is, and have ended its last install
// well; the recorded power state follows the server's.
func (w *BareMetalWorkers) Verify(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]Drift, error) {
	ref, err := TenantosRef(svc)
	if err != nil || svc.Status == "pending" {
		return nil, nil // no server held for good yet: nothing to compare
	}
	// A server gone or not the service's marks the service needs_repair.
	srv, err := w.serviceServer(ctx, svc, log)
	switch {
	case errors.Is(err, ErrServiceBusy):
		return nil, nil // a job is changing it: the next round looks
	case errors.Is(err, errServerGone):
		return []Drift{{Kind: DriftMissing, Detail: failure.UserMessage(err)}}, nil
	case errors.Is(err, ErrNeedsRepair):
		return []Drift{{Kind: DriftForeign, Detail: failure.UserMessage(err)}}, nil
	case err != nil:
		return nil, err
	}
	var drift []Drift
	switch {
	case svc.Status == "suspended" && !srv.Suspended:
		drift = append(drift, Drift{Kind: DriftSuspension, Detail: "the service is suspended but its server is not; suspend it again (POST /action suspend)"})
	case svc.Status == "active" && srv.Suspended:
		drift = append(drift, Drift{Kind: DriftSuspension, Detail: "the server is suspended at Tenantos but the service is not; resume it (POST /action resume)"})
	}
	if got := powerStates[srv.Power]; got != "" && got != svc.PowerState && !srv.ReinstallationRunning && !srv.RescueBootRunning {
		if err := w.Queries.FollowPowerState(ctx, queries.FollowPowerStateParams{ID: svc.ID, PowerState: got, Was: svc.PowerState}); err != nil {
			return nil, fmt.Errorf("record power state: %w", err)
		}
		drift = append(drift, Drift{Kind: DriftPower, Fixed: true,
			Detail: fmt.Sprintf("recorded %s, the server is %s; the record now follows the server", svc.PowerState, got)})
	}
	st, err := w.Tenantos.InstallStatus(ctx, ref.ServerID)
	if err != nil {
		return nil, err
	}
	if st.Failed {
		drift = append(drift, Drift{Kind: DriftInstall, Detail: fmt.Sprintf("the server's last installation failed at Tenantos (%s); a reinstall repairs it", st.ErrorMessage)})
	}
	return drift, nil
}

// Resource implements Verifier: the Tenantos server id.
func (w *BareMetalWorkers) Resource(svc *queries.Service) (string, bool) {
	ref, err := TenantosRef(svc)
	return strconv.Itoa(ref.ServerID), err == nil
}

// Marked implements Verifier: the servers tagged as a service's. Only the
// fleet sets the tag, so it is proof enough. A leftover is given back to
// the pool (its installs stopped, powered off, the service's addresses
// removed, unmarked); it is not wiped: the next service's install
// partitions its disks.
func (w *BareMetalWorkers) Marked(ctx context.Context, log *slog.Logger) ([]Marked, error) {
	servers, err := w.Tenantos.Servers(ctx)
	if err != nil {
		return nil, err
	}
	var found []Marked
	for _, srv := range servers {
		id, ok := markOf(srv)
		if !ok {
			continue
		}
		found = append(found, Marked{Resource: strconv.Itoa(srv.ID), Name: fmt.Sprintf("tenantos server %d", srv.ID), Service: id,
			Log: log.With("service_id", id, "provider", tenantos.Provider, "server", srv.ID),
			Delete: func(ctx context.Context) error {
				now, err := w.Tenantos.Server(ctx, srv.ID)
				if err != nil {
					return err
				}
				if mark, _ := markOf(now); mark != id {
					return fmt.Errorf("server %d no longer carries the mark of service %s", srv.ID, id)
				}
				_, err = w.release(ctx, &queries.Service{ID: id, Provider: tenantos.Provider, Plan: []byte("{}")}, now, nil)
				return err
			},
		})
	}
	return found, nil
}

// UsageGroup implements UsageReader: servers are read one at a time.
func (w *BareMetalWorkers) UsageGroup(*queries.Service) string { return "" }

// Usage implements UsageReader: the power state from the BMC, and the
// month's traffic so far as the byte counters (they go back to zero when
// a month begins, which the collector reads as no traffic).
func (w *BareMetalWorkers) Usage(ctx context.Context, _ string, svcs []queries.Service) (map[uuid.UUID]Usage, error) {
	out := map[uuid.UUID]Usage{}
	var errs []error
	for _, s := range svcs {
		ref, err := TenantosRef(&s)
		if err != nil {
			continue
		}
		power, err := w.Tenantos.PowerStatus(ctx, ref.ServerID)
		if errors.Is(err, tenantos.ErrNotFound) {
			out[s.ID] = Usage{}
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.ID, err))
			continue
		}
		u := Usage{Online: power == "online"}
		stats, err := w.Tenantos.Stats(ctx, ref.ServerID, "network", "text", tenantos.StatsQuery{Predefined: "currentMonth"})
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.ID, err))
			continue
		}
		for _, p := range stats.Ports {
			for _, pt := range p.Points {
				u.NetIn += pt.BytesIn
				u.NetOut += pt.BytesOut
			}
		}
		out[s.ID] = u
	}
	return out, errors.Join(errs...)
}

// bareMetalTimeframes maps Traffic timeframes to Tenantos' ranges.
var bareMetalTimeframes = map[string]string{"hour": "1h", "day": "24h", "week": "week", "month": "30days"}
