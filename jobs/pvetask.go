package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// intent is remembered just before a call that starts a Proxmox task, so
// that an attempt which stopped between the call and recording its UPID can
// find the task: one of its type on the VM, started by our token at or
// after At and held by no other job.
type intent struct {
	// At is when the call was about to be made, by the node's clock (our
	// clock plus the measured skew) less the measurement's uncertainty.
	At   time.Time `json:"at"`
	Type string    `json:"type"`
}

// ErrNeedsRepair is wrapped by the error of a job that found its service's
// VM missing or not the service's own: nothing was changed, and the service
// is marked needs_repair until a repair job brings it back.
var ErrNeedsRepair = errors.New("the service needs repair")

// needsRepair returns the permanent error that marks the service.
func needsRepair(op, msg string) error {
	return &failure.Error{Class: failure.Permanent, Provider: proxmox.Provider, Op: op, Message: msg, Err: ErrNeedsRepair}
}

// pveTasks runs Proxmox tasks as resumable parts of a job's steps: a task
// is started at most once per step however often the step is retried or
// resumed on another worker, a retry waits only on the task its own step
// started (claimed in the database, so no two jobs ever hold one task), and
// the VM is checked to be the service's own before any task changes it.
type pveTasks struct {
	c   *proxmox.Client
	q   *queries.Queries
	run *Run
	log *slog.Logger
	// owner is the service whose VMs the tasks may change.
	owner uuid.UUID
}

func newPVETasks(c *proxmox.Client, run *Run, log *slog.Logger, owner uuid.UUID) *pveTasks {
	return &pveTasks{c: c, q: run.q, run: run, log: log, owner: owner}
}

// pveOp is one task-starting operation on a VM.
type pveOp struct {
	// Key names the operation within its step, for what is remembered.
	Key string
	// VM is the VM whose task list holds the task (the id in its UPID): the
	// VM changed, or for a clone the template.
	VM proxmox.VMRef
	// Foreign says that VM is not the service's own (a template cloned
	// from), so that it is not checked to carry the service's mark.
	Foreign bool
	// MayBeGone lets Plan decide about a VM that does not exist (a destroy
	// that an earlier attempt carried out); otherwise a missing VM means
	// the service needs repair.
	MayBeGone bool
	// NoAdopt says that a task this step may have started is recognised by
	// its effect in Plan, never picked from the task list: a clone's task
	// is listed under its template, shared by every clone of it.
	NoAdopt bool
	// Plan looks at the VM and returns the task type to start and how, or
	// "" when the operation's effect is there already. Start may return ""
	// when its call found the effect there after all.
	Plan func(ctx context.Context) (taskType string, start func(ctx context.Context) (string, error), err error)
	// Check, when set, reads the VM after the task ended well and returns
	// an error wrapping errChangeNotSeen when the change is not there (the
	// operation is then planned afresh), or another error when it could not
	// look (the next attempt looks again): the job succeeds only on what
	// Proxmox shows.
	Check func(ctx context.Context) error
}

// errChangeNotSeen is wrapped by a Check's error when Proxmox shows the VM
// without the change its task was to make.
var errChangeNotSeen = errors.New("the change cannot be seen")

// notSeen returns the transient error of a change that cannot be seen.
func notSeen(op, msg string) error {
	return &failure.Error{Class: failure.Transient, Provider: proxmox.Provider, Op: op + ".check", Message: msg, Err: errChangeNotSeen}
}

// do carries out op: it waits on the task an earlier attempt of the step
// started, and otherwise checks that the VM is the service's, starts the
// task (unless Plan says there is nothing to do) and waits on it. A task
// that ended in error is forgotten, so that the next attempt looks afresh,
// and its error returned wrapping proxmox.ErrTaskFailed. A task that ended
// with warnings succeeded; the warnings go to the job's log.
func (p *pveTasks) do(ctx context.Context, op pveOp) error {
	upidKey, intentKey := op.Key+".upid", op.Key+".intent"
	var upid string
	ok, err := p.run.Recall(upidKey, &upid)
	if err != nil {
		return err
	}
	if !ok {
		if upid, err = p.begin(ctx, op, upidKey, intentKey); err != nil || upid == "" {
			return err
		}
	}
	end, werr := p.c.WaitTask(ctx, upid)
	if werr != nil && !errors.Is(werr, proxmox.ErrTaskFailed) {
		return werr // the next attempt waits on the same task
	}
	if werr == nil && end.ExitStatus != "OK" {
		line := fmt.Sprintf("Proxmox task %s ended with %s", taskType(upid), end.ExitStatus)
		if len(end.Warnings) > 0 {
			line += ": " + strings.Join(end.Warnings, "; ")
		}
		if err := p.run.Log(ctx, line); err != nil {
			return err
		}
	}
	if werr == nil && op.Check != nil {
		werr = op.Check(ctx)
		if werr != nil && !errors.Is(werr, errChangeNotSeen) {
			return werr // keep the task: the next attempt checks again
		}
		if werr != nil {
			// Plan afresh: the change may need doing anew.
			p.log.Warn("task ended well but its change cannot be seen", "upid", upid, "err", werr)
		}
	}
	if werr == nil {
		return nil
	}
	// Spent: never adopted again by this step, however close its start.
	var spent []string
	if _, err := p.run.Recall(op.Key+".spent", &spent); err != nil {
		return err
	}
	if err := p.run.Remember(ctx, op.Key+".spent", append(spent, upid)); err != nil {
		return err
	}
	if err := p.run.Forget(ctx, upidKey); err != nil {
		return err
	}
	if err := p.run.Forget(ctx, intentKey); err != nil {
		return err
	}
	return werr
}

// taskType reads the type out of a UPID.
func taskType(upid string) string {
	parts := strings.Split(upid, ":")
	if len(parts) < 6 {
		return "task"
	}
	return parts[5]
}

// begin finds the task an earlier attempt of the step started, or starts
// one, and returns its UPID, or "" when there is nothing to do.
func (p *pveTasks) begin(ctx context.Context, op pveOp, upidKey, intentKey string) (string, error) {
	var in intent
	hadIntent, err := p.run.Recall(intentKey, &in)
	if err != nil {
		return "", err
	}
	if hadIntent && !op.NoAdopt {
		upid, err := p.adopt(ctx, op.Key, op.VM, in)
		if err != nil || upid != "" {
			if upid != "" {
				p.log.Info("found the task an earlier attempt started", "upid", upid)
				err = p.run.Remember(ctx, upidKey, upid)
			}
			return upid, err
		}
	}
	if !op.Foreign {
		if err := p.verifyOwn(ctx, op.VM); err != nil && !(op.MayBeGone && errors.Is(err, errVMGone)) {
			return "", err
		}
	}
	typ, start, err := op.Plan(ctx)
	if err != nil || typ == "" {
		return "", err
	}
	at, err := p.nodeNow(ctx, op.VM.Node)
	if err != nil {
		return "", err
	}
	if err := p.run.Remember(ctx, intentKey, intent{At: at, Type: typ}); err != nil {
		return "", err
	}
	upid, err := start(ctx)
	if err != nil {
		return "", err
	}
	if upid == "" { // the call found the effect there after all
		return "", p.run.Forget(ctx, intentKey)
	}
	if holder, err := p.claim(ctx, upid); err != nil {
		return "", err
	} else if holder != p.run.jobID {
		return "", fmt.Errorf("task %s that this job started is held by job %s", upid, holder)
	}
	p.log.Info("proxmox task started", "type", typ, "upid", upid)
	return upid, p.run.Remember(ctx, upidKey, upid)
}

// nodeNow is the node's time now, less what the measurement cannot tell:
// the earliest start time the node can give a task started from here on.
func (p *pveTasks) nodeNow(ctx context.Context, node string) (time.Time, error) {
	skew, uncertainty, err := p.c.NodeTime(ctx, node)
	if err != nil {
		return time.Time{}, err
	}
	// PVE records start times in whole seconds, truncated.
	return time.Now().Add(skew - uncertainty).Truncate(time.Second), nil
}

// started returns the task the current step started for key: the one it
// remembered or, when an attempt ended between starting the task and
// remembering it, the one its recorded intent finds; "" for none.
func (p *pveTasks) started(ctx context.Context, key string, vm proxmox.VMRef) (string, error) {
	var upid string
	if ok, err := p.run.Recall(key+".upid", &upid); err != nil || ok {
		return upid, err
	}
	var in intent
	if ok, err := p.run.Recall(key+".intent", &in); err != nil || !ok {
		return "", err
	}
	return p.adopt(ctx, key, vm, in)
}

// adopt returns the task an earlier attempt started after recording in, or
// "" when it never started: the oldest task of the intent's type on the VM
// that our token started at or after the intent, that no other job holds
// and that this step did not give up on already (a task that failed). The
// claim makes it this job's.
func (p *pveTasks) adopt(ctx context.Context, key string, vm proxmox.VMRef, in intent) (string, error) {
	tasks, err := p.c.Tasks(ctx, vm, in.Type, in.At)
	if err != nil {
		return "", err
	}
	var spent []string
	if _, err := p.run.Recall(key+".spent", &spent); err != nil {
		return "", err
	}
	tasks = slices.DeleteFunc(tasks, func(t proxmox.Task) bool {
		return t.User != p.c.TokenID() || t.Start.Before(in.At) || slices.Contains(spent, t.UPID)
	})
	slices.SortStableFunc(tasks, func(a, b proxmox.Task) int { return a.Start.Compare(b.Start) })
	for _, t := range tasks {
		holder, err := p.claim(ctx, t.UPID)
		if err != nil {
			return "", err
		}
		if holder == p.run.jobID {
			return t.UPID, nil
		}
		p.log.Info("a task of the same type belongs to another job", "upid", t.UPID, "holder", holder)
	}
	return "", nil
}

// claim records that the job's current step holds the task and returns the
// job that holds it (another one, when it claimed it first).
func (p *pveTasks) claim(ctx context.Context, upid string) (uuid.UUID, error) {
	holder, err := p.q.ClaimTask(ctx, queries.ClaimTaskParams{Upid: upid, JobID: p.run.jobID, Step: p.run.step})
	if err != nil {
		return uuid.Nil, fmt.Errorf("claim task %s: %w", upid, err)
	}
	return holder, nil
}

// verifyOwn checks that the VM at ref is the service's own: it carries the
// service's tag or the description its clone was made with. A VM that is
// gone or is someone else's is never touched.
func (p *pveTasks) verifyOwn(ctx context.Context, ref proxmox.VMRef) error {
	cfg, err := p.c.Config(ctx, ref)
	if errors.Is(err, proxmox.ErrNotFound) {
		return fmt.Errorf("%w: %w", errVMGone, needsRepair("verify", fmt.Sprintf("the service's VM %d on %s does not exist; nothing was changed", ref.VMID, ref.Node)))
	}
	if err != nil {
		return err
	}
	if !ownedBy(cfg, p.owner) {
		return needsRepair("verify", fmt.Sprintf("VM %d on %s is not this service's (it carries neither the tag %s nor the service in its description); nothing was changed",
			ref.VMID, ref.Node, VMTag(p.owner)))
	}
	return nil
}

// errVMGone is wrapped by verifyOwn's error when the VM does not exist.
var errVMGone = errors.New("VM does not exist")

// ownedBy reports whether a VM's configuration marks it as the service's.
func ownedBy(cfg proxmox.VMConfig, service uuid.UUID) bool {
	return strings.Contains(cfg.Raw["description"], vmDescription(service)) || slices.Contains(cfg.Tags, VMTag(service))
}
