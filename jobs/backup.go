package jobs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// BackupArgs ask for a vzdump backup of a VPS.
type BackupArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Note is stored with the backup, after the service's id.
	Note string `json:"note,omitempty"`
}

// Kind implements Args.
func (BackupArgs) Kind() string { return "vps.backup" }

// InsertOpts gives a backup of a large disk its time, on the low queue:
// nobody waits at the screen for it.
func (BackupArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueLow, MaxAttempts: 20, Timeout: 4 * time.Hour, Mutating: true}
}

// RestoreArgs ask for a VPS to be restored in place from one of its backups.
type RestoreArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	BackupID  string    `json:"backupId"`
}

// Kind implements Args.
func (RestoreArgs) Kind() string { return "vps.restore" }

// InsertOpts implements ArgsWithInsertOpts.
func (RestoreArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: 4 * time.Hour, Mutating: true}
}

// BackupDeleteArgs ask for one of a VPS's backups to be deleted.
type BackupDeleteArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	BackupID  string    `json:"backupId"`
}

// Kind implements Args.
func (BackupDeleteArgs) Kind() string { return "vps.backup.delete" }

// InsertOpts implements ArgsWithInsertOpts.
func (BackupDeleteArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueLow, MaxAttempts: 10, Timeout: 10 * time.Minute, Mutating: true}
}

// Backup is one backup of a VPS as the API shows it.
type Backup struct {
	// ID is the archive's file name, unique on its storage.
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
	SizeBytes uint64    `json:"sizeBytes"`
	// Note is what was asked for with the backup (POST …/backups {"note"}),
	// as Proxmox keeps it in the archive's notes.
	Note string `json:"note"`
}

// backupNameRE is the file name vzdump gives a VM's archive.
var backupNameRE = regexp.MustCompile(`^vzdump-qemu-(\d+)-\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}\.[a-z.]+$`)

// ValidBackupID reports whether id names an archive of the VM.
func ValidBackupID(id string, vmid int) bool {
	m := backupNameRE.FindStringSubmatch(id)
	return m != nil && m[1] == strconv.Itoa(vmid)
}

// backupID is the file name part of a backup volume id
// ("local:backup/vzdump-qemu-100-….vma.zst").
func backupID(volid string) string {
	_, name, _ := strings.Cut(volid, "/")
	return name
}

// ListBackups lists a VPS's backups, oldest first.
func ListBackups(ctx context.Context, c *proxmox.Client, ref proxmox.VMRef, storage string) ([]Backup, error) {
	vols, err := c.Backups(ctx, ref, storage)
	if err != nil {
		return nil, err
	}
	out := make([]Backup, 0, len(vols))
	for _, v := range vols {
		if v.VMID != 0 && v.VMID != ref.VMID {
			continue
		}
		out = append(out, Backup{ID: backupID(v.VolID), CreatedAt: time.Unix(v.CTime, 0).UTC(), SizeBytes: v.Size, Note: v.Notes})
	}
	return out, nil
}

// Backup implements Worker for BackupArgs. Backups of one node run one at a
// time: a job waits for the node's backup lease, holds it while its vzdump
// runs (taking it again in a later attempt) and gives it up when the
// attempt ends. A plan's backup limit is kept by deleting the oldest
// backups after the new one exists.
func (w *VPSWorkers) Backup(ctx context.Context, job *Job[BackupArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	plan, err := ServicePlan(job.Service)
	if err != nil {
		return err
	}
	ref, _ := v.vm()
	slot := newLease(w.Queries, "backup:"+ref.Node, job.Row.ID, w.Proxmox.PollInterval(), job.Log)
	defer slot.release(ctx)
	notes := fmt.Sprintf("provisiond service %s", job.Service.ID)
	if job.Args.Note != "" {
		notes += ": " + job.Args.Note
	}
	err = job.Steps(ctx,
		Step{"queue", slot.hold},
		Step{"backup", func(ctx context.Context) error {
			if err := slot.hold(ctx); err != nil { // an earlier attempt queued
				return err
			}
			// The backups there before: the new one is the archive that
			// was not, and the job succeeds only when it can be listed.
			var before []string
			return v.tasks.do(ctx, pveOp{Key: "vzdump", VM: ref,
				Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
					// The node's slot is ours, but a vzdump an earlier
					// holder left running (its job stopped without stopping
					// it) may still use the node: wait for it.
					if err := w.waitNoBackup(ctx, ref.Node); err != nil {
						return "", nil, err
					}
					backups, err := ListBackups(ctx, w.Proxmox, ref, w.backupStorage())
					if err != nil {
						return "", nil, err
					}
					for _, b := range backups {
						before = append(before, b.ID)
					}
					if err := job.Remember(ctx, "before", before); err != nil {
						return "", nil, err
					}
					return "vzdump", func(ctx context.Context) (string, error) {
						return w.Proxmox.Backup(ctx, ref, proxmox.BackupOptions{Storage: w.backupStorage(), Mode: "snapshot", Notes: notes})
					}, nil
				},
				Check: func(ctx context.Context) error {
					if _, err := job.Recall("before", &before); err != nil {
						return err
					}
					backups, err := ListBackups(ctx, w.Proxmox, ref, w.backupStorage())
					if err != nil {
						return err
					}
					for _, b := range backups {
						if !slices.Contains(before, b.ID) {
							return job.Set(ctx, "backup", b)
						}
					}
					return notSeen("vzdump", fmt.Sprintf("the backup task ended but no new archive of VM %d is on storage %s", ref.VMID, w.backupStorage()))
				},
			})
		}},
		Step{"prune", func(ctx context.Context) error { return v.prune(ctx, plan.BackupLimit, nil) }},
	)
	if errors.Is(err, ErrCancelled) && ctx.Err() == nil {
		// A cancelled backup stops its vzdump: it would hold the VM's lock
		// and the node's disks after the node's backup slot is given up.
		// The task is found from the step's intent when the cancellation
		// cut the attempt short before it remembered the task.
		if upid, rerr := v.tasks.started(ctx, "vzdump", ref); rerr == nil && upid != "" && job.Step() == "backup" {
			if serr := w.Proxmox.StopTask(ctx, upid); serr != nil {
				job.Log.Warn("could not stop the cancelled backup's vzdump task", "upid", upid, "err", serr)
			} else if _, werr := w.Proxmox.WaitTask(ctx, upid); errors.Is(werr, proxmox.ErrTaskFailed) || werr == nil {
				job.Log.Info("the cancelled backup's vzdump task was stopped", "upid", upid)
			}
		}
	}
	if err != nil {
		return v.stopped(ctx, err)
	}
	var made Backup
	if ok, err := job.Get("backup", &made); err != nil {
		return err
	} else if ok {
		job.SetResult(map[string]any{"backup": made})
	}
	return nil
}

// waitNoBackup waits until no vzdump runs on the node.
func (w *VPSWorkers) waitNoBackup(ctx context.Context, node string) error {
	return poll(ctx, w.Proxmox.PollInterval(), func(ctx context.Context) (bool, error) {
		running, err := w.Proxmox.Running(ctx, node, 0, "vzdump")
		return !running, err
	})
}

func (w *VPSWorkers) backupStorage() string {
	if w.BackupStorage == "" {
		return "local"
	}
	return w.BackupStorage
}

// prune deletes the oldest backups beyond limit, among those only says
// yes to (all when nil); a zero limit keeps all, a negative one deletes all.
func (v *vpsJob) prune(ctx context.Context, limit int, only func(Backup) bool) error {
	if limit == 0 {
		return nil
	}
	limit = max(limit, 0)
	ref, _ := v.vm()
	backups, err := ListBackups(ctx, v.w.Proxmox, ref, v.w.backupStorage())
	if err != nil {
		return err
	}
	if only != nil {
		backups = slices.DeleteFunc(backups, func(b Backup) bool { return !only(b) })
	}
	for i := 0; i < len(backups)-limit; i++ {
		if err := v.deleteBackup(ctx, backups[i].ID); err != nil {
			return err
		}
		v.log.Info("deleted the oldest backup past the plan's limit", "backup", backups[i].ID, "limit", limit)
	}
	return nil
}

// deleteBackup deletes an archive and waits for Proxmox to finish; an
// archive that is gone already counts as deleted.
func (v *vpsJob) deleteBackup(ctx context.Context, id string) error {
	ref, _ := v.vm()
	volid := v.w.backupStorage() + ":backup/" + id
	listed := func(ctx context.Context) (bool, error) {
		backups, err := ListBackups(ctx, v.w.Proxmox, ref, v.w.backupStorage())
		return slices.ContainsFunc(backups, func(b Backup) bool { return b.ID == id }), err
	}
	// The archive is not the VM: deleting it needs no VM (a termination
	// deletes backups after the VM is gone); its name carries the VMID.
	return v.tasks.do(ctx, pveOp{Key: "delete " + id, VM: ref, Foreign: true,
		Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
			if ok, err := listed(ctx); err != nil || !ok {
				return "", nil, err
			}
			return "imgdel", func(ctx context.Context) (string, error) { return v.w.Proxmox.DeleteVolume(ctx, ref.Node, volid) }, nil
		},
		Check: func(ctx context.Context) error {
			if ok, err := listed(ctx); err != nil || !ok {
				return err
			}
			return notSeen("imgdel", fmt.Sprintf("backup %s is still listed after its delete task", id))
		},
	})
}

// DeleteBackup implements Worker for BackupDeleteArgs.
func (w *VPSWorkers) DeleteBackup(ctx context.Context, job *Job[BackupDeleteArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	return v.stopped(ctx, job.Steps(ctx, Step{"delete", func(ctx context.Context) error { return v.deleteBackup(ctx, job.Args.BackupID) }}))
}

// Restore implements Worker for RestoreArgs: the VM is stopped, restored in
// place from the archive and started.
func (w *VPSWorkers) Restore(ctx context.Context, job *Job[RestoreArgs]) error {
	v, err := existingVM(ctx, w, job)
	if err != nil {
		return err
	}
	ref, _ := v.vm()
	plan, err := ServicePlan(job.Service)
	if err != nil {
		return err
	}
	volid := w.backupStorage() + ":backup/" + job.Args.BackupID
	// Once the restore starts the disk is being overwritten: it is carried
	// through, and a restore that fails leaves the service needs_repair.
	job.CommitAt("restore")
	err = job.Steps(ctx,
		Step{"stop", v.powerOff(false)},
		Step{"restore", func(ctx context.Context) error {
			return v.tasks.do(ctx, pveOp{Key: "restore", VM: ref,
				Plan: func(ctx context.Context) (string, func(context.Context) (string, error), error) {
					return "qmrestore", func(ctx context.Context) (string, error) { return w.Proxmox.Restore(ctx, ref, volid, "") }, nil
				},
				Check: func(ctx context.Context) error {
					cfg, err := w.Proxmox.Config(ctx, ref)
					if err != nil {
						return err
					}
					switch {
					case cfg.Lock != "":
						// Kept, not planned afresh: a second restore is never started.
						return lockedErr("restore.check", cfg.Lock)
					case bootDisk(cfg) == "":
						return permanent("restore.check", fmt.Sprintf("after the restore, VM %d has no disk", ref.VMID))
					}
					if !ownedBy(cfg, job.Service.ID) {
						// The archive's configuration came back with it; one
						// made before the VM was registered lacks the tag.
						// The VM was checked to be ours before the restore.
						return tagVM(ctx, w.Proxmox, ref, cfg, job.Service.ID)
					}
					return nil
				},
			})
		}},
		Step{"plan", func(ctx context.Context) error {
			// An archive older than the last upgrade brings back the old
			// sizes: the VM gets the plan it is paid for again.
			if err := v.configure(ctx, map[string]any{"cores": plan.Cores, "memory": plan.MemoryMB}); err != nil {
				return err
			}
			return v.growDisk(ctx, plan.DiskGB)
		}},
		Step{"start", v.start},
	)
	if err != nil {
		return v.stopped(ctx, err)
	}
	if err := w.Queries.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: job.Service.ID, PowerState: "running"}); err != nil {
		return fmt.Errorf("record power state: %w", err)
	}
	return nil
}
