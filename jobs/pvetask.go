package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hostfleet/provisiond/adapters/proxmox"
)

// clockSlack widens the search for a task an earlier attempt may have
// started, for clock skew between us and the Proxmox node.
const clockSlack = 2 * time.Minute

// intent is remembered just before a call that starts a Proxmox task, so
// that an attempt which stopped between the call and recording its UPID can
// find the task.
type intent struct {
	At   time.Time `json:"at"`
	Type string    `json:"type"`
}

// pveTasks runs Proxmox tasks as resumable parts of a job's steps: a task
// is started at most once per step however often the step is retried or
// resumed on another worker, and a retry waits on the task an earlier
// attempt started.
type pveTasks struct {
	c   *proxmox.Client
	run *Run
	log *slog.Logger
}

// pveOp is one task-starting operation on a VM.
type pveOp struct {
	// Key names the operation within its step, for what is remembered.
	Key string
	// VM is the VM whose task list holds the task (the id in its UPID).
	VM proxmox.VMRef
	// Plan looks at the VM and returns the task type to start and how, or
	// "" when the operation's effect is there already. Start may return ""
	// when its call found the effect there after all.
	Plan func(ctx context.Context) (taskType string, start func(ctx context.Context) (string, error), err error)
}

// do carries out op: it waits on a task an earlier attempt started or that
// is already running on the VM, and otherwise starts one (unless Plan says
// there is nothing to do) and waits on it. A task that ended in error is
// forgotten, so that the next attempt looks afresh, and its error returned
// wrapping proxmox.ErrTaskFailed.
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
	werr := p.c.WaitTask(ctx, upid)
	if werr == nil || !errors.Is(werr, proxmox.ErrTaskFailed) {
		return werr // on other errors keep the UPID: the next attempt waits on the same task
	}
	if err := p.run.Forget(ctx, upidKey); err != nil {
		return err
	}
	if err := p.run.Forget(ctx, intentKey); err != nil {
		return err
	}
	return werr
}

// begin finds or starts the operation's task and returns its UPID, or ""
// when there is nothing to do.
func (p *pveTasks) begin(ctx context.Context, op pveOp, upidKey, intentKey string) (string, error) {
	var in intent
	hadIntent, err := p.run.Recall(intentKey, &in)
	if err != nil {
		return "", err
	}
	if hadIntent {
		upid, found, err := p.c.FindTask(ctx, op.VM, in.Type, in.At.Add(-clockSlack))
		if err != nil {
			return "", err
		}
		if found {
			p.log.Info("found the task an earlier attempt started", "upid", upid)
			return upid, p.run.Remember(ctx, upidKey, upid)
		}
	}
	typ, start, err := op.Plan(ctx)
	if err != nil || typ == "" {
		return "", err
	}
	if upid, found, err := p.c.FindTask(ctx, op.VM, typ, time.Time{}); err != nil {
		return "", err
	} else if found {
		p.log.Info("waiting on a task already running on the VM", "upid", upid)
		return upid, p.run.Remember(ctx, upidKey, upid)
	}
	if err := p.run.Remember(ctx, intentKey, intent{At: time.Now(), Type: typ}); err != nil {
		return "", err
	}
	upid, err := start(ctx)
	if err != nil {
		return "", err
	}
	if upid == "" { // the call found the effect there after all
		return "", p.run.Forget(ctx, intentKey)
	}
	p.log.Info("proxmox task started", "type", typ, "upid", upid)
	return upid, p.run.Remember(ctx, upidKey, upid)
}
