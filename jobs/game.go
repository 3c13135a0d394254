package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/wings"
	"github.com/hostfleet/provisiond/queries"
)

// GamePlan is a game server service's plan, stored in services.plan.
type GamePlan struct {
	MemoryMB int `json:"memoryMb"`
	SwapMB   int `json:"swapMb"`
	DiskMB   int `json:"diskMb"`
	// CPU is a percentage of one core (200 = two cores); 0 is unlimited.
	CPU         int `json:"cpu"`
	IO          int `json:"io"`
	Databases   int `json:"databases"`
	Allocations int `json:"allocations"`
	Backups     int `json:"backups"`
	// Nest and Egg name the game; DockerImage and Startup default to the
	// egg's.
	Nest        int               `json:"nest"`
	Egg         int               `json:"egg"`
	DockerImage string            `json:"dockerImage,omitempty"`
	Startup     string            `json:"startup,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	// Locations the server may be deployed to.
	Locations []int `json:"locations"`
	// User is the panel user that owns the server.
	User int `json:"user"`
}

// GameRef is where a service's game server lives on Pterodactyl.
type GameRef struct {
	ServerID   int    `json:"serverId"`
	Identifier string `json:"identifier"`
	UUID       string `json:"uuid"`
	// Node is the Wings node the server runs on; usage is collected per node.
	Node int `json:"node,omitempty"`
}

// GameServicePlan reads a game service's plan.
func GameServicePlan(svc *queries.Service) (GamePlan, error) {
	var p GamePlan
	if err := json.Unmarshal(svc.Plan, &p); err != nil {
		return p, permanent("plan", "the service's plan is unreadable")
	}
	return p, nil
}

// PterodactylRef reads the game server a service lives on.
func PterodactylRef(svc *queries.Service) (GameRef, error) {
	var ref GameRef
	if err := json.Unmarshal(svc.ProviderRef, &ref); err != nil || ref.ServerID <= 0 || ref.Identifier == "" {
		return ref, permanent("pterodactyl", "the service has no game server yet")
	}
	return ref, nil
}

func (p GamePlan) limits() (pterodactyl.Limits, pterodactyl.FeatureLimits) {
	return pterodactyl.Limits{Memory: p.MemoryMB, Swap: p.SwapMB, Disk: p.DiskMB, IO: cmp.Or(p.IO, 500), CPU: p.CPU},
		pterodactyl.FeatureLimits{Databases: p.Databases, Allocations: p.Allocations, Backups: p.Backups}
}

// GameProvisionArgs ask for a game server for a pending Pterodactyl service.
type GameProvisionArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
}

// Kind implements Args.
func (GameProvisionArgs) Kind() string { return "game.provision" }

// InsertOpts gives an install (a game download) its time.
func (GameProvisionArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: time.Hour, Mutating: true}
}

// GameWorkers carries out the Pterodactyl game server jobs.
type GameWorkers struct {
	Queries     *queries.Queries
	Pterodactyl *pterodactyl.Client
	// PollInterval is how often an install's progress is read.
	PollInterval time.Duration
	// Consoles, when set, carries install output from Wings into the
	// jobs' logs (in a worker) or the live consoles to their viewers (in
	// the API).
	Consoles *wings.Hub
}

// Provision implements Worker for GameProvisionArgs. The server is created
// with the service's id as its external id, so that a resumed job finds the
// server it made instead of making another; once installed it is started.
func (w *GameWorkers) Provision(ctx context.Context, job *Job[GameProvisionArgs]) error {
	if job.Service == nil || job.Service.Provider != pterodactyl.Provider {
		return permanent(job.Args.Kind(), "provision needs a Pterodactyl service")
	}
	plan, err := GameServicePlan(job.Service)
	if err != nil {
		return err
	}
	var srv pterodactyl.Server
	err = job.Steps(ctx,
		Step{"create", func(ctx context.Context) error {
			s, err := w.Pterodactyl.ServerByExternalID(ctx, job.Service.ID.String())
			if err == nil {
				job.Log.Info("the service's game server exists already", "server", s.ID)
				return job.Set(ctx, "server", s.ID)
			}
			if !errors.Is(err, pterodactyl.ErrNotFound) {
				return err
			}
			egg, err := w.Pterodactyl.Egg(ctx, plan.Nest, plan.Egg)
			if err != nil {
				return err
			}
			env := map[string]string{}
			for _, v := range egg.Variables {
				env[v.EnvVariable] = v.DefaultValue
			}
			for k, v := range plan.Environment {
				env[k] = v
			}
			limits, features := plan.limits()
			s, err = w.Pterodactyl.CreateServer(ctx, pterodactyl.NewServer{
				Name: job.Service.Name, ExternalID: job.Service.ID.String(), User: plan.User, Egg: plan.Egg,
				DockerImage: cmp.Or(plan.DockerImage, egg.DockerImage), Startup: cmp.Or(plan.Startup, egg.Startup),
				Environment: env, Limits: limits, FeatureLimits: features,
				Deploy: &pterodactyl.Deploy{Locations: plan.Locations, PortRange: []string{}},
			})
			if err != nil {
				return err
			}
			job.Log.Info("game server created", "server", s.ID)
			return job.Set(ctx, "server", s.ID)
		}},
		Step{"install", func(ctx context.Context) error {
			var id int
			if _, err := job.Get("server", &id); err != nil {
				return err
			}
			srv, err = w.waitInstalled(ctx, job.Run, id)
			return err
		}},
		// The panel leaves a new server offline; the customer ordered one
		// that runs, and the service says it does.
		Step{"start", func(ctx context.Context) error {
			if srv.ID == 0 { // resumed here: the install step did not run
				var id int
				if _, err := job.Get("server", &id); err != nil {
					return err
				}
				if srv, err = w.Pterodactyl.Server(ctx, id); err != nil {
					return err
				}
			}
			return powerGame(ctx, job.Run, w.Pterodactyl, srv.Identifier, "start", w.PollInterval)
		}},
	)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(GameRef{ServerID: srv.ID, Identifier: srv.Identifier, UUID: srv.UUID, Node: srv.Node})
	if err := w.Queries.SetServiceProvisioned(ctx, queries.SetServiceProvisionedParams{ID: job.Service.ID, ProviderRef: b}); err != nil {
		return fmt.Errorf("record the game server: %w", err)
	}
	job.SetResult(GameRef{ServerID: srv.ID, Identifier: srv.Identifier, UUID: srv.UUID})
	return nil
}

// waitInstalled waits until the server's install has ended, copying its
// output into the job's log when it can; a failed install or reinstall
// fails the job. A failed reinstall leaves the server "installed" in the
// panel's eyes, so the status, not the installed flag, says it failed.
func (w *GameWorkers) waitInstalled(ctx context.Context, run *Run, id int) (pterodactyl.Server, error) {
	var s pterodactyl.Server
	watching := false
	err := poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		var err error
		if s, err = w.Pterodactyl.Server(ctx, id); err != nil {
			return false, err
		}
		if !watching && w.Consoles != nil && s.Identifier != "" && s.Status == pterodactyl.StatusInstalling {
			watching = true
			w.copyInstallOutput(ctx, run, s.Identifier)
		}
		switch {
		case s.Status == pterodactyl.StatusInstallFailed:
			return false, permanent("install", "the game server's install failed; see its install log on the panel")
		case s.Status == pterodactyl.StatusReinstallFailed:
			return false, permanent("install", "the game server's reinstall failed; see its install log on the panel")
		}
		return s.Container.Installed && s.Status != pterodactyl.StatusInstalling, nil
	})
	return s, err
}

// gameJob returns a job's game server, which must exist.
func gameServer[T Args](job *Job[T]) (GameRef, error) {
	if job.Service == nil || job.Service.Provider != pterodactyl.Provider {
		return GameRef{}, permanent(job.Row.Kind, "this job needs a Pterodactyl service")
	}
	return PterodactylRef(job.Service)
}

// GameReinstallArgs ask for a game server to be installed afresh, optionally
// with another egg, image or startup variables (checked by the API against
// the egg's rules before the job exists).
type GameReinstallArgs struct {
	ServiceID   uuid.UUID         `json:"serviceId"`
	Egg         int               `json:"egg,omitempty"`
	DockerImage string            `json:"dockerImage,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
}

// Kind implements Args.
func (GameReinstallArgs) Kind() string { return "game.reinstall" }

// InsertOpts implements ArgsWithInsertOpts.
func (GameReinstallArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: time.Hour, Mutating: true}
}

// Reinstall implements Worker for GameReinstallArgs: the startup settings
// are changed first when asked, then the panel reinstalls and the job waits
// for the install to end.
func (w *GameWorkers) Reinstall(ctx context.Context, job *Job[GameReinstallArgs]) error {
	ref, err := gameServer(job)
	if err != nil {
		return err
	}
	a := job.Args
	return job.Steps(ctx,
		Step{"startup", func(ctx context.Context) error {
			if a.Egg == 0 && a.DockerImage == "" && len(a.Environment) == 0 {
				return nil
			}
			srv, err := w.Pterodactyl.Server(ctx, ref.ServerID)
			if err != nil {
				return err
			}
			env := srv.Container.Environment
			for k, v := range a.Environment {
				env[k] = v
			}
			_, err = w.Pterodactyl.UpdateStartup(ctx, ref.ServerID, pterodactyl.Startup{
				Startup: srv.Container.StartupCommand, Environment: env,
				Egg: cmp.Or(a.Egg, srv.Egg), Image: cmp.Or(a.DockerImage, srv.Container.Image),
			})
			return err
		}},
		Step{"reinstall", func(ctx context.Context) error {
			var asked bool
			if _, err := job.Run.Recall("asked", &asked); err != nil || asked {
				return err // an install the panel started is not started twice
			}
			if err := w.Pterodactyl.Reinstall(ctx, ref.ServerID); err != nil {
				return err
			}
			return job.Run.Remember(ctx, "asked", true)
		}},
		Step{"install", func(ctx context.Context) error {
			_, err := w.waitInstalled(ctx, job.Run, ref.ServerID)
			return err
		}},
	)
}

// GameChangePlanArgs ask for a game server's limits to change in place.
type GameChangePlanArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	Plan      GamePlan  `json:"plan"`
}

// Kind implements Args.
func (GameChangePlanArgs) Kind() string { return "game.change-plan" }

// ChangePlan implements Worker for GameChangePlanArgs: the build limits
// change in place (no data is lost) and the server restarts only if it was
// running, so that the new limits apply.
func (w *GameWorkers) ChangePlan(ctx context.Context, job *Job[GameChangePlanArgs]) error {
	ref, err := gameServer(job)
	if err != nil {
		return err
	}
	plan := job.Args.Plan
	err = job.Steps(ctx,
		Step{"inspect", func(ctx context.Context) error {
			res, err := w.Pterodactyl.Resources(ctx, ref.Identifier)
			if err != nil {
				return err
			}
			return job.Set(ctx, "running", res.State == "running" || res.State == "starting")
		}},
		Step{"build", func(ctx context.Context) error {
			srv, err := w.Pterodactyl.Server(ctx, ref.ServerID)
			if err != nil {
				return err
			}
			limits, features := plan.limits()
			_, err = w.Pterodactyl.UpdateBuild(ctx, ref.ServerID, pterodactyl.Build{Allocation: srv.Allocation, Limits: limits, FeatureLimits: features})
			return err
		}},
		Step{"restart", func(ctx context.Context) error {
			var running bool
			if _, err := job.Get("running", &running); err != nil || !running {
				return err
			}
			return powerGame(ctx, job.Run, w.Pterodactyl, ref.Identifier, "restart", w.PollInterval)
		}},
	)
	if err != nil {
		return err
	}
	b, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	return w.Queries.SetServicePlan(ctx, queries.SetServicePlanParams{ID: job.Service.ID, Plan: b})
}

// GameBackup is a game server's backup as the API and job results show it.
type GameBackup struct {
	// ID is the panel's uuid of the backup.
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Checksum     string     `json:"checksum"`
	Successful   bool       `json:"successful"`
	Locked       bool       `json:"locked"`
	SizeBytes    int64      `json:"sizeBytes"`
	IgnoredFiles []string   `json:"ignoredFiles"`
	CreatedAt    time.Time  `json:"createdAt"`
	CompletedAt  *time.Time `json:"completedAt"`
}

// GameBackupOf is the panel's backup as a GameBackup.
func GameBackupOf(b pterodactyl.Backup) GameBackup {
	return GameBackup{ID: b.UUID, Name: b.Name, Checksum: b.Checksum, Successful: b.Successful, Locked: b.Locked,
		SizeBytes: b.Bytes, IgnoredFiles: append([]string{}, b.IgnoredFiles...), CreatedAt: b.CreatedAt, CompletedAt: b.CompletedAt}
}

// GameBackupArgs ask for a backup of a game server, to restore one, or to
// delete one.
type GameBackupArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	// Action is create, restore or delete.
	Action string `json:"action"`
	// Backup names the backup to restore or delete; Name the new one.
	Backup   string `json:"backup,omitempty"`
	Name     string `json:"name,omitempty"`
	Truncate bool   `json:"truncate,omitempty"`
}

// Kind implements Args.
func (GameBackupArgs) Kind() string { return "game.backup" }

// InsertOpts implements ArgsWithInsertOpts.
func (GameBackupArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueLow, MaxAttempts: 15, Timeout: 4 * time.Hour, Mutating: true}
}

// Backup implements Worker for GameBackupArgs. A restore stops the server
// (Wings does), restores and starts it again. Whether a backup can be
// restored is the panel's to say (it takes one that completed without
// success, and refuses one still running with a 400 that fails the job in
// its words), so it is not checked here.
func (w *GameWorkers) Backup(ctx context.Context, job *Job[GameBackupArgs]) error {
	ref, err := gameServer(job)
	if err != nil {
		return err
	}
	a := job.Args
	switch a.Action {
	case "create":
		return job.Steps(ctx,
			Step{"backup", func(ctx context.Context) error {
				// The name finds a backup an interrupted attempt asked for.
				name := cmp.Or(a.Name, "provisiond "+job.Row.ID.String()[:8])
				var asked bool
				if _, err := job.Run.Recall("asked", &asked); err != nil {
					return err
				}
				if asked {
					backups, err := w.Pterodactyl.Backups(ctx, ref.Identifier)
					if err != nil {
						return err
					}
					for _, b := range backups {
						if b.Name == name {
							return job.Set(ctx, "backup", b.UUID)
						}
					}
				}
				if err := job.Run.Remember(ctx, "asked", true); err != nil {
					return err
				}
				b, err := w.Pterodactyl.CreateBackup(ctx, ref.Identifier, name)
				if err != nil {
					return err
				}
				return job.Set(ctx, "backup", b.UUID)
			}},
			Step{"wait", func(ctx context.Context) error {
				var id string
				if _, err := job.Get("backup", &id); err != nil {
					return err
				}
				b, err := w.waitBackup(ctx, ref.Identifier, id)
				if err == nil {
					job.SetResult(map[string]any{"backup": GameBackupOf(b)})
				}
				return err
			}},
		)
	case "restore":
		return job.Steps(ctx,
			Step{"restore", func(ctx context.Context) error {
				var asked bool
				if _, err := job.Run.Recall("asked", &asked); err != nil || asked {
					return err
				}
				if err := w.Pterodactyl.RestoreBackup(ctx, ref.Identifier, a.Backup, a.Truncate); err != nil {
					return err
				}
				return job.Run.Remember(ctx, "asked", true)
			}},
			Step{"wait", func(ctx context.Context) error { return w.waitRestored(ctx, ref.ServerID) }},
			Step{"start", func(ctx context.Context) error {
				return powerGame(ctx, job.Run, w.Pterodactyl, ref.Identifier, "start", w.PollInterval)
			}},
		)
	case "delete":
		return job.Steps(ctx, Step{"delete", func(ctx context.Context) error {
			err := w.Pterodactyl.DeleteBackup(ctx, ref.Identifier, a.Backup)
			if errors.Is(err, pterodactyl.ErrNotFound) {
				return nil // deleted by an earlier attempt
			}
			return err
		}})
	}
	return permanent(a.Kind(), fmt.Sprintf("unknown backup action %q", a.Action))
}

// waitBackup waits until the backup has completed; a failed one fails the job.
func (w *GameWorkers) waitBackup(ctx context.Context, identifier, id string) (pterodactyl.Backup, error) {
	var b pterodactyl.Backup
	err := poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		var err error
		if b, err = w.Pterodactyl.Backup(ctx, identifier, id); err != nil || b.CompletedAt == nil {
			return false, err
		}
		if !b.Successful {
			return false, permanent("backup", "the panel reports the backup failed")
		}
		return true, nil
	})
	return b, err
}

// waitRestored waits until the server is no longer restoring a backup. The
// panel marks it restoring_backup before it accepts the restore, so a
// normal status means the restore has ended.
func (w *GameWorkers) waitRestored(ctx context.Context, id int) error {
	return poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		s, err := w.Pterodactyl.Server(ctx, id)
		return s.Status != pterodactyl.StatusRestoringBackup, err
	})
}

// pollInterval is how often a game server's state is read while a job
// waits on it.
func (w *GameWorkers) pollInterval() time.Duration { return cmp.Or(w.PollInterval, 2*time.Second) }

// Terminate is the Pterodactyl Terminator: the server is deleted,
// forcibly when the graceful delete fails (Wings unreachable), and the
// service marked terminated.
func (w *GameWorkers) Terminate(ctx context.Context, job *Job[TerminationArgs]) error {
	ref, err := gameServer(job)
	if err != nil {
		return err
	}
	err = job.Steps(ctx, Step{"delete", func(ctx context.Context) error {
		err := w.Pterodactyl.DeleteServer(ctx, ref.ServerID, false)
		if err != nil && !errors.Is(err, pterodactyl.ErrNotFound) {
			job.Log.Warn("graceful delete failed; forcing it", "err", err)
			err = w.Pterodactyl.DeleteServer(ctx, ref.ServerID, true)
		}
		if errors.Is(err, pterodactyl.ErrNotFound) {
			return nil
		}
		return err
	}})
	if err != nil {
		return err
	}
	return w.Queries.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: job.Service.ID, Status: "terminated"})
}

// gameStates are the states power signals lead to.
var gameStates = map[string]string{"start": "running", "restart": "running", "stop": "offline", "kill": "offline"}

// powerGame sends a power signal once per step (remembered, so that a
// retry does not restart the server twice) and waits until the server is
// in the state the signal leads to.
func powerGame(ctx context.Context, run *Run, c *pterodactyl.Client, identifier, signal string, every time.Duration) error {
	var asked bool
	if _, err := run.Recall("asked", &asked); err != nil {
		return err
	}
	if !asked {
		if err := c.Power(ctx, identifier, signal); err != nil {
			return err
		}
		if err := run.Remember(ctx, "asked", true); err != nil {
			return err
		}
	}
	return poll(ctx, cmp.Or(every, time.Second), func(ctx context.Context) (bool, error) {
		res, err := c.Resources(ctx, identifier)
		return res.State == gameStates[signal], err
	})
}

// copyInstallOutput records the server's install output lines in the job's
// log until ctx ends. It is best effort: the install goes on without it.
func (w *GameWorkers) copyInstallOutput(ctx context.Context, run *Run, identifier string) {
	v, err := w.Consoles.Watch(ctx, "install:"+identifier, w.credentials(identifier))
	if err != nil {
		run.log.Warn("cannot follow the install's output", "err", err)
		return
	}
	go func() {
		defer v.Close()
		for ev := range v.Events() {
			if ev.Type == wings.TypeInstall && ev.Data != "" && !strings.HasPrefix(ev.Data, "install ") {
				run.Log(context.WithoutCancel(ctx), ev.Data)
			}
		}
	}()
}
