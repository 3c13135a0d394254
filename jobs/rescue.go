package jobs

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
)

// RescueArgs ask for a VPS to boot into the rescue system, or back out of it.
type RescueArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Enable boots the rescue ISO; false restores the disk's boot order.
	Enable bool `json:"enable"`
}

// Kind implements Args.
func (RescueArgs) Kind() string { return "vps.rescue" }

// InsertOpts puts rescue on the critical queue: the customer is locked out.
func (RescueArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueCritical, MaxAttempts: 10, Timeout: 15 * time.Minute, Mutating: true}
}

// RescueResult is what a finished rescue job reports; the password comes
// once, as the job's secrets.
type RescueResult struct {
	Rescue bool `json:"rescue"`
}

// RescueSecrets is handed back once by a job that enabled rescue.
type RescueSecrets struct {
	Password string `json:"password"`
}

// Rescue implements Worker for RescueArgs. Enabling attaches the rescue ISO
// as a CD-ROM, boots from it first and sets a generated root password
// through cloud-init; disabling detaches it and boots from the disk again.
// Either way the VM is restarted.
func (w *VPSWorkers) Rescue(ctx context.Context, job *Job[RescueArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	ref, _ := v.vm()
	var secrets RescueSecrets
	steps := []Step{}
	if job.Args.Enable {
		steps = append(steps, Step{"password", func(ctx context.Context) error {
			if ok, err := job.GetSecret("password", &secrets); err != nil || ok {
				return err
			}
			secrets.Password = rand.Text()[:20]
			return job.SetSecret(ctx, "password", secrets)
		}})
	}
	// Once the boot order changes the VM is restarted into it, cancelled
	// or not: it never waits half-switched.
	job.CommitAt("configure")
	steps = append(steps,
		Step{"configure", func(ctx context.Context) error {
			cfg, err := w.Proxmox.Config(ctx, ref)
			if err != nil {
				return err
			}
			disk := bootDisk(cfg)
			values := map[string]any{"boot": "order=" + disk, "delete": "ide2"}
			if job.Args.Enable {
				if _, err := job.GetSecret("password", &secrets); err != nil {
					return err
				}
				values = map[string]any{
					"ide2": w.rescueISO() + ",media=cdrom", "boot": "order=ide2;" + disk,
					"cipassword": secrets.Password,
				}
			}
			return v.configure(ctx, values)
		}},
		Step{"reboot", v.reboot},
	)
	if err := job.Steps(ctx, steps...); err != nil {
		return v.stopped(ctx, err)
	}
	job.SetResult(RescueResult{Rescue: job.Args.Enable})
	if job.Args.Enable {
		job.SetSecretResult(secrets)
	}
	return nil
}

func (w *VPSWorkers) rescueISO() string {
	if w.RescueISO == "" {
		return "local:iso/rescue.iso"
	}
	return w.RescueISO
}

// reboot shuts the VM down (hard after the timeout) unless it is off, and
// starts it. A resumed reboot does not shut the VM down a second time.
func (v *vpsJob) reboot(ctx context.Context) error {
	p, err := v.power()
	if err != nil {
		return err
	}
	var down bool
	if _, err := v.run.Recall("down", &down); err != nil {
		return err
	}
	if !down {
		if err := p.shutdown(ctx); err != nil {
			return err
		}
		if err := v.run.Remember(ctx, "down", true); err != nil {
			return err
		}
	}
	return p.ensure(proxmox.OpStart)(ctx)
}
