package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// PowerArgs ask for a power action on a service.
type PowerArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Action is one of PowerActions.
	Action string `json:"action"`
}

// Kind implements Args.
func (PowerArgs) Kind() string { return "service.power" }

// InsertOpts puts power actions on the critical queue: a customer waits for
// the button to work.
func (PowerArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueCritical, MaxAttempts: 10, Timeout: 10 * time.Minute, Mutating: true}
}

// PowerActions are the actions of POST /api/services/{id}/action.
var PowerActions = []string{"start", "stop", "restart", "reset", "suspend", "resume"}

// PowerResult is what a finished power job reports.
type PowerResult struct {
	Action     string `json:"action"`
	PowerState string `json:"powerState"`
}

// PowerWorker carries out power actions.
type PowerWorker struct {
	Queries *queries.Queries
	Proxmox *proxmox.Client
	// ShutdownTimeout is how long a restart waits for the guest to shut
	// down before it powers the VM off hard.
	ShutdownTimeout time.Duration
}

// Work implements Worker.
func (w *PowerWorker) Work(ctx context.Context, job *Job[PowerArgs]) error {
	if job.Service == nil {
		return permanent(job.Args.Kind(), "power job has no service")
	}
	switch job.Service.Provider {
	case proxmox.Provider:
		return w.proxmox(ctx, job)
	default:
		return permanent(job.Args.Kind(), fmt.Sprintf("power actions are not supported for %s services", job.Service.Provider))
	}
}

func (w *PowerWorker) proxmox(ctx context.Context, job *Job[PowerArgs]) error {
	ref, err := ProxmoxRef(job.Service)
	if err != nil {
		return err
	}
	vm := &pvePower{c: w.Proxmox, ref: ref, run: job.Run, log: job.Log, shutdownTimeout: w.ShutdownTimeout}
	var steps []Step
	switch job.Args.Action {
	case "start":
		steps = []Step{{"start", vm.ensure(proxmox.OpStart)}}
	case "stop":
		steps = []Step{{"stop", vm.ensure(proxmox.OpStop)}}
	case "restart":
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
	ref             proxmox.VMRef
	run             *Run
	log             *slog.Logger
	shutdownTimeout time.Duration
}

// clockSlack widens the search for a task an earlier attempt may have
// started, for clock skew between us and the Proxmox node.
const clockSlack = 2 * time.Minute

// intent is remembered just before a power call, so that an attempt which
// stopped between the call and recording its UPID can find the task.
type intent struct {
	At time.Time       `json:"at"`
	Op proxmox.PowerOp `json:"op"`
}

// ensure returns a step that brings the VM to the state op leads to: it does
// nothing when the VM is there already, waits on a task an earlier attempt
// started, and otherwise starts the task and waits for it.
func (p *pvePower) ensure(op proxmox.PowerOp) func(context.Context) error {
	upidKey := string(op) + ".upid"
	return func(ctx context.Context) error {
		var upid string
		ok, err := p.run.Recall(upidKey, &upid)
		if err != nil {
			return err
		}
		if !ok {
			if upid, err = p.begin(ctx, op); err != nil || upid == "" {
				return err
			}
		}
		werr := p.c.WaitTask(ctx, upid)
		if werr == nil {
			return nil
		}
		if !errors.Is(werr, proxmox.ErrTaskFailed) {
			return werr // keep the UPID: the next attempt waits on the same task
		}
		// The task ended badly: the next attempt must look afresh.
		if err := p.run.Forget(ctx, upidKey); err != nil {
			return err
		}
		if err := p.run.Forget(ctx, string(op)+".intent"); err != nil {
			return err
		}
		if st, err := p.c.State(ctx, p.ref); err == nil && reached(op, st) {
			return nil // e.g. "already running": someone else got it there
		}
		return werr
	}
}

// begin starts the task for op unless nothing needs doing, in which case it
// returns "".
func (p *pvePower) begin(ctx context.Context, op proxmox.PowerOp) (string, error) {
	upidKey, intentKey := string(op)+".upid", string(op)+".intent"
	var in intent
	hadIntent, err := p.run.Recall(intentKey, &in)
	if err != nil {
		return "", err
	}
	if hadIntent {
		upid, found, err := p.c.FindTask(ctx, p.ref, in.Op.TaskType(), in.At.Add(-clockSlack))
		if err != nil {
			return "", err
		}
		if found {
			p.log.Info("found the task an earlier attempt started", "upid", upid)
			return upid, p.run.Remember(ctx, upidKey, upid)
		}
	}
	st, err := p.c.State(ctx, p.ref)
	if err != nil {
		return "", err
	}
	if reached(op, st) {
		p.log.Info("VM is in the wanted state already", "op", op, "state", st.PowerState())
		return "", nil
	}
	if st.Lock != "" {
		return "", &failure.Error{Class: failure.Transient, Provider: proxmox.Provider, Op: string(op),
			Message: fmt.Sprintf("VM is locked (%s)", st.Lock)}
	}
	eff := effective(op, st)
	if eff == "" {
		return "", nil
	}
	if upid, found, err := p.c.FindTask(ctx, p.ref, eff.TaskType(), time.Time{}); err != nil {
		return "", err
	} else if found {
		p.log.Info("waiting on a task already running on the VM", "upid", upid)
		return upid, p.run.Remember(ctx, upidKey, upid)
	}
	if err := p.run.Remember(ctx, intentKey, intent{At: time.Now(), Op: eff}); err != nil {
		return "", err
	}
	upid, err := p.c.Power(ctx, p.ref, eff, proxmox.PowerOptions{ShutdownTimeout: p.shutdownTimeout})
	if err != nil {
		if st, serr := p.c.State(ctx, p.ref); serr == nil && reached(op, st) {
			return "", nil
		}
		return "", err
	}
	p.log.Info("proxmox task started", "op", eff, "upid", upid)
	return upid, p.run.Remember(ctx, upidKey, upid)
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
