package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/queries"
)

// PowerArgs ask for a power action on a service.
type PowerArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Action is one of PowerActions.
	Action string `json:"action"`
	// Reason of a suspend or resume: SuspendedForPayment (the default) or
	// SuspendedForCancellation. The provider suspends for the first reason
	// and resumes when none is left.
	Reason string `json:"reason,omitempty"`
	// WaitForService queues the action behind the service's running job (a
	// cancellation's suspension during a 4-hour backup) instead of being
	// refused: such a job does not hold its service, and waits, without
	// spending attempts, until no other job does.
	WaitForService bool `json:"waitForService,omitempty"`
}

// Kind implements Args.
func (PowerArgs) Kind() string { return "service.power" }

// InsertOpts puts power actions on the critical queue: a customer waits for
// the button to work.
func (a PowerArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueCritical, MaxAttempts: 10, Timeout: 10 * time.Minute, Mutating: !a.WaitForService}
}

// PowerActions are the actions of POST /api/services/{id}/action. kill is
// a hard stop (for a VM, the same as stop).
var PowerActions = []string{"start", "stop", "restart", "reset", "kill", "suspend", "resume"}

// PowerResult is what a finished power job reports.
type PowerResult struct {
	Action     string `json:"action"`
	PowerState string `json:"powerState"`
}

// PowerWorker carries out power actions.
type PowerWorker struct {
	Queries     *queries.Queries
	Proxmox     *proxmox.Client
	Pterodactyl *pterodactyl.Client
	// PollInterval is how often a game server's state is read while it
	// changes.
	PollInterval time.Duration
	// ShutdownTimeout is how long a restart waits for the guest to shut
	// down before it powers the VM off hard.
	ShutdownTimeout time.Duration
}

// Work implements Worker.
func (w *PowerWorker) Work(ctx context.Context, job *Job[PowerArgs]) error {
	if job.Service == nil {
		return permanent(job.Args.Kind(), "power job has no service")
	}
	if job.Args.WaitForService {
		other, err := w.Queries.GetActiveServiceJob(ctx, nullUUID(job.Service.ID))
		if err == nil {
			return &SnoozeError{After: 15 * time.Second,
				Reason: fmt.Sprintf("waiting for job %s (%s) on the service to end", other.ID, other.Kind)}
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("look for the service's running job: %w", err)
		}
	}
	if job.Args.Reason == SuspendedForCancellation && !cancellationStands(job.Service, job.Args.Action) {
		// Queued behind another job, it comes after the cancellation was
		// withdrawn (a suspend) or came back (a resume): nothing to do.
		job.Log.Info("the cancellation changed while the job waited; nothing to do")
		job.SetResult(PowerResult{Action: job.Args.Action, PowerState: job.Service.PowerState})
		return nil
	}
	if a := job.Args.Action; a == "suspend" || a == "resume" {
		act, err := w.decideSuspension(ctx, job)
		if err != nil {
			return err
		}
		if !act {
			// Another reason keeps the service suspended, or it was
			// suspended already: the provider has nothing to do.
			job.SetResult(PowerResult{Action: a, PowerState: job.Service.PowerState})
			return nil
		}
	}
	switch job.Service.Provider {
	case proxmox.Provider:
		return w.proxmox(ctx, job)
	case pterodactyl.Provider:
		return w.game(ctx, job)
	default:
		return permanent(job.Args.Kind(), fmt.Sprintf("power actions are not supported for %s services", job.Service.Provider))
	}
}

func (w *PowerWorker) proxmox(ctx context.Context, job *Job[PowerArgs]) error {
	ref, err := locateVM(ctx, w.Proxmox, w.Queries, job.Service, job.Log)
	if err != nil {
		return err
	}
	vm := &pvePower{c: w.Proxmox, tasks: newPVETasks(w.Proxmox, job.Run, job.Log, job.Service.ID), ref: ref, run: job.Run, log: job.Log, shutdownTimeout: w.ShutdownTimeout}
	var steps []Step
	switch job.Args.Action {
	case "start":
		steps = []Step{{"start", vm.ensure(proxmox.OpStart)}}
	case "stop", "kill":
		steps = []Step{{"stop", vm.ensure(proxmox.OpStop)}}
	case "restart":
		// Once the guest goes down it comes up again, cancelled or not.
		job.CommitAt("shutdown")
		steps = []Step{{"shutdown", vm.shutdown}, {"start", vm.ensure(proxmox.OpStart)}}
	case "reset":
		steps = []Step{{"reset", vm.ensure(proxmox.OpReset)}}
	case "suspend":
		steps = []Step{{"suspend", vm.ensure(proxmox.OpSuspend)}}
	case "resume":
		steps = []Step{{"resume", vm.ensure(proxmox.OpResume)}}
	default:
		return permanent(job.Args.Kind(), fmt.Sprintf("unknown power action %q", job.Args.Action))
	}
	if err := job.Steps(ctx, steps...); err != nil {
		return err
	}
	st, err := w.Proxmox.State(ctx, ref)
	if err != nil {
		return err
	}
	if err := w.Queries.SetServicePowerState(ctx, queries.SetServicePowerStateParams{
		ID: job.Service.ID, PowerState: st.PowerState(),
	}); err != nil {
		return fmt.Errorf("record power state: %w", err)
	}
	if status := serviceStatusAfter(job.Args.Action, job.Service.Status); status != job.Service.Status {
		if err := w.Queries.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: job.Service.ID, Status: status}); err != nil {
			return fmt.Errorf("record service status: %w", err)
		}
	}
	job.SetResult(PowerResult{Action: job.Args.Action, PowerState: st.PowerState()})
	return nil
}

// game carries out a power action on a game server: signals through the
// client API, suspension through the application API. It waits until the
// server reaches the state the action leads to.
func (w *PowerWorker) game(ctx context.Context, job *Job[PowerArgs]) error {
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
		case "reset":
			return permanent(job.Args.Kind(), "game servers have no reset; use restart or kill")
		}
		return powerGame(ctx, job.Run, w.Pterodactyl, ref.Identifier, action, w.PollInterval)
	}})
	if err != nil {
		return err
	}
	state := map[string]string{"running": "running", "offline": "stopped"}[want]
	if state != "" {
		if err := w.Queries.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: job.Service.ID, PowerState: state}); err != nil {
			return fmt.Errorf("record power state: %w", err)
		}
	}
	if status := serviceStatusAfter(action, job.Service.Status); status != job.Service.Status {
		if err := w.Queries.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: job.Service.ID, Status: status}); err != nil {
			return fmt.Errorf("record service status: %w", err)
		}
	}
	job.SetResult(PowerResult{Action: action, PowerState: state})
	return nil
}

// cancellationStands reports whether a cancellation's suspend (or resume)
// still matches the service: a suspend while it is cancelled and not
// terminated, a resume while it is not cancelled.
func cancellationStands(svc *queries.Service, action string) bool {
	cancelled := svc.TerminationJobID.Valid && svc.Status != "terminated"
	return cancelled == (action == "suspend")
}

// serviceStatusAfter returns the service status a successful action leaves.
func serviceStatusAfter(action, status string) string {
	switch {
	case action == "suspend" && status == "active":
		return "suspended"
	case action == "resume" && status == "suspended":
		return "active"
	}
	return status
}

// ProxmoxRef reads the VM a Proxmox service lives on.
func ProxmoxRef(svc *queries.Service) (proxmox.VMRef, error) {
	var ref proxmox.VMRef
	if err := json.Unmarshal(svc.ProviderRef, &ref); err != nil || ref.Node == "" || ref.VMID <= 0 {
		return ref, permanent("proxmox", "the service has no Proxmox VM yet")
	}
	return ref, nil
}

func permanent(op, msg string) error {
	return &failure.Error{Class: failure.Permanent, Provider: "provisiond", Op: op, Message: msg}
}

// pvePower drives one VM to a power state through resumable steps.
type pvePower struct {
	c               *proxmox.Client
	tasks           *pveTasks
	ref             proxmox.VMRef
	run             *Run
	log             *slog.Logger
	shutdownTimeout time.Duration
}

// ensure returns a step that brings the VM to the state op leads to: it does
// nothing when the VM is there already, waits on a task an earlier attempt
// started, and otherwise starts the task and waits for it.
func (p *pvePower) ensure(op proxmox.PowerOp) func(context.Context) error {
	return func(ctx context.Context) error {
		err := p.tasks.do(ctx, pveOp{Key: string(op), VM: p.ref,
			Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
				return p.plan(ctx, op)
			},
			Check: func(ctx context.Context) error {
				st, err := p.c.State(ctx, p.ref)
				if err != nil {
					return err
				}
				if op == proxmox.OpReset && st.Running() || reached(op, st) {
					return nil
				}
				return notSeen(string(op), fmt.Sprintf("after its %s task, VM %d on %s is %s", op, p.ref.VMID, p.ref.Node, st.PowerState()))
			},
		})
		if err == nil || !errors.Is(err, proxmox.ErrTaskFailed) {
			return err
		}
		if st, serr := p.c.State(ctx, p.ref); serr == nil && reached(op, st) {
			return nil // e.g. "already running": someone else got it there
		}
		return err
	}
}

// plan decides what op needs given the VM's state.
func (p *pvePower) plan(ctx context.Context, op proxmox.PowerOp) (string, func(context.Context) (string, error), error) {
	st, err := p.c.State(ctx, p.ref)
	if err != nil {
		return "", nil, err
	}
	if reached(op, st) {
		p.log.Info("VM is in the wanted state already", "op", op, "state", st.PowerState())
		return "", nil, nil
	}
	if st.Lock != "" {
		return "", nil, lockedErr(string(op), st.Lock)
	}
	eff := effective(op, st)
	if eff == "" {
		return "", nil, nil
	}
	return eff.TaskType(), func(ctx context.Context) (string, error) {
		upid, err := p.c.Power(ctx, p.ref, eff, proxmox.PowerOptions{ShutdownTimeout: p.shutdownTimeout})
		if err != nil {
			if st, serr := p.c.State(ctx, p.ref); serr == nil && reached(op, st) {
				return "", nil
			}
			return "", err
		}
		return upid, nil
	}, nil
}

// shutdown asks the guest to shut down and powers it off hard when it does
// not do so in time.
func (p *pvePower) shutdown(ctx context.Context) error {
	var hard bool
	if _, err := p.run.Recall("hard", &hard); err != nil {
		return err
	}
	if !hard {
		err := p.ensure(proxmox.OpShutdown)(ctx)
		if err == nil || !errors.Is(err, proxmox.ErrTaskFailed) {
			return err
		}
		p.log.Warn("guest did not shut down; powering it off", "reason", failure.UserMessage(err))
		if err := p.run.Remember(ctx, "hard", true); err != nil {
			return err
		}
	}
	return p.ensure(proxmox.OpStop)(ctx)
}

// reached reports whether the VM is where op would take it. A reset has no
// such state: it always runs.
func reached(op proxmox.PowerOp, st proxmox.State) bool {
	switch op {
	case proxmox.OpStart, proxmox.OpResume:
		return st.Running()
	case proxmox.OpStop, proxmox.OpShutdown:
		return st.Stopped()
	case proxmox.OpSuspend:
		return st.Paused() || st.Stopped()
	}
	return false
}

// effective returns the operation that gets a VM in state st where op means
// to take it, or "" when there is nothing to do.
func effective(op proxmox.PowerOp, st proxmox.State) proxmox.PowerOp {
	switch {
	case op == proxmox.OpReset && st.Stopped():
		return proxmox.OpStart // a reset of a stopped VM boots it
	case op == proxmox.OpStart && st.Paused():
		return proxmox.OpResume
	case op == proxmox.OpShutdown && st.Paused():
		return proxmox.OpStop // a paused guest cannot react to ACPI
	case op == proxmox.OpResume && st.Stopped():
		return "" // nothing to resume; booting it is the customer's call
	}
	return op
}
