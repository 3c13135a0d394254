package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Wings' refusals of a power action, as its websocket reports them to a
// token with admin.websocket.errors.
var (
	errBusy       = errors.New("another power action is currently being processed for this server, please try again later")
	errRunning    = errors.New("server is running")
	errInstalling = errors.New("server is currently installing")
	errRestoring  = errors.New("server is currently being restored")
	errSuspended  = errors.New("server is currently in a suspended state")
	errBadAction  = errors.New("attempting to invoke unknown power action")
)

// consoleKeep is how many console lines "send logs" replays (Wings'
// websocket_log_count).
const consoleKeep = 150

// later runs fn under the lock after d, unless the simulator closed or the
// server was deleted by then.
func (s *Server) later(gs *serverState, d time.Duration, fn func()) *time.Timer {
	return time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && !gs.deleted {
			fn()
		}
	})
}

// broadcast sends an event to every authenticated viewer of the server;
// the lock must be held.
func (s *Server) broadcast(gs *serverState, event string, args ...string) {
	for c := range gs.conns {
		if c.listening {
			c.send(message{Event: event, Args: args})
		}
	}
}

// setState changes the power state and tells the viewers; the lock must be
// held.
func (s *Server) setState(gs *serverState, state string) {
	if gs.State == state {
		return
	}
	gs.State = state
	if state == StateRunning {
		gs.started = time.Now()
	}
	s.broadcast(gs, "status", state)
}

// consoleLine prints a line on the server's console; the lock must be held.
func (s *Server) consoleLine(gs *serverState, line string) {
	gs.console = append(gs.console, line)
	if len(gs.console) > consoleKeep {
		gs.console = gs.console[len(gs.console)-consoleKeep:]
	}
	s.broadcast(gs, "console output", line)
}

// command writes a command to the server's console, where the game
// echoes it; the lock must be held.
func (s *Server) command(gs *serverState, cmd string) {
	s.consoleLine(gs, "> "+cmd)
	s.consoleLine(gs, fmt.Sprintf("[%s INFO]: Executed command: %s", time.Now().UTC().Format("15:04:05"), cmd))
}

// power carries out a power action as Wings does: start boots an offline
// server through starting to running; stop goes through stopping to
// offline; restart does both; kill stops at once. Stop and restart hold
// the power lock until they are done, and kill overrides it. A taskErr
// makes the transition fail and fall back. The error is what the websocket
// reports; the HTTP endpoint ignores it as Wings does. The lock must be
// held.
func (s *Server) power(gs *serverState, action, taskErr string) error {
	switch {
	case action == "kill":
	case gs.Status == StatusInstalling:
		return errInstalling
	case gs.Status == StatusRestoringBackup:
		return errRestoring
	case gs.Status == StatusSuspended && (action == "start" || action == "restart"):
		return errSuspended
	}
	d := s.cfg.TaskDuration
	switch action {
	case "start":
		if gs.State != StateOffline {
			return errRunning
		}
		s.boot(gs, taskErr)
	case "stop", "restart":
		if gs.busy {
			return errBusy
		}
		restart := action == "restart"
		gs.restarting = restart
		if gs.State == StateOffline {
			if restart {
				s.boot(gs, taskErr)
			}
			return nil
		}
		gs.busy = true
		if gs.power != nil {
			gs.power.Stop()
		}
		previous := gs.State
		s.setState(gs, StateStopping)
		gs.power = s.later(gs, d, func() {
			gs.busy = false
			if taskErr != "" && !restart {
				s.consoleLine(gs, "[Pterodactyl Daemon]: "+taskErr)
				s.setState(gs, previous)
				return
			}
			s.setState(gs, StateOffline)
			if restart {
				s.boot(gs, taskErr)
			}
		})
	case "kill":
		if gs.power != nil {
			gs.power.Stop()
		}
		gs.busy = false
		s.setState(gs, StateOffline)
	default:
		return errBadAction
	}
	return nil
}

// boot starts the server's process: starting, then running once the game
// prints its done line; the lock must be held.
func (s *Server) boot(gs *serverState, taskErr string) {
	s.setState(gs, StateStarting)
	s.consoleLine(gs, "[Pterodactyl Daemon]: Updating process configuration files...")
	s.consoleLine(gs, "[Pterodactyl Daemon]: Ensuring file permissions are set correctly, this could take a few seconds...")
	gs.power = s.later(gs, s.cfg.TaskDuration, func() {
		if taskErr != "" {
			s.consoleLine(gs, "[Pterodactyl Daemon]: "+taskErr)
			s.setState(gs, StateOffline)
			return
		}
		s.consoleLine(gs, `Done (1.042s)! For help, type "help"`)
		s.setState(gs, StateRunning)
	})
}

// install (re)installs a server: Wings stops it, runs the egg's install
// script for InstallDuration with its output going to viewers allowed to
// see it, then reports the result to the panel. A taskErr makes the
// install fail: the panel marks the server install_failed, or
// reinstall_failed when reinstall says Wings reinstalled it. startAfter
// boots a server that installed well. The lock must be held.
func (s *Server) install(gs *serverState, taskErr string, startAfter, reinstall bool) {
	gs.stopTimers()
	gs.busy = false
	s.setState(gs, StateOffline)
	gs.Status = StatusInstalling
	gs.installRun = &installRun{err: taskErr, startAfter: startAfter, reinstall: reinstall}
	s.broadcast(gs, "install started", "")
	lines := []string{
		"Pulling Docker container image, this could take a few minutes to complete...",
		"Finished pulling Docker container image",
		"Executing install script",
		"Downloading server files...",
	}
	d := s.cfg.InstallDuration
	for i, line := range lines {
		gs.install = append(gs.install, s.later(gs, d*time.Duration(i)/time.Duration(len(lines)), func() {
			s.broadcast(gs, "install output", line)
		}))
	}
	gs.install = append(gs.install, s.later(gs, d, func() {
		gs.install = nil
		gs.installRun = nil
		ok := taskErr == ""
		if !ok {
			s.broadcast(gs, "install output", "Install failed: "+taskErr)
		}
		// A server suspended while it installed stays suspended.
		if gs.Status == StatusInstalling {
			gs.Status = ""
			if !ok {
				gs.Status = failedStatus(reinstall)
			}
		}
		gs.UpdatedAt = time.Now()
		s.broadcast(gs, "install completed", "")
		if ok && startAfter && gs.Status == "" {
			s.boot(gs, "")
		}
	}))
}

// resourceUsage is Wings' stats payload.
type resourceUsage struct {
	Memory      int64   `json:"memory_bytes"`
	MemoryLimit int64   `json:"memory_limit_bytes"`
	CPU         float64 `json:"cpu_absolute"`
	Network     struct {
		Rx int64 `json:"rx_bytes"`
		Tx int64 `json:"tx_bytes"`
	} `json:"network"`
	Uptime int64  `json:"uptime"` // milliseconds
	State  string `json:"state"`
	Disk   int64  `json:"disk_bytes"`
}

const mib = 1 << 20

// stats are the server's current resource usage, made up from its state
// and uptime; the lock must be held.
func (s *Server) stats(gs *serverState) resourceUsage {
	u := resourceUsage{State: gs.State, MemoryLimit: int64(gs.Limits.Memory) * mib, Disk: 256 * mib}
	switch gs.State {
	case StateRunning:
		up := time.Since(gs.started)
		u.Uptime = up.Milliseconds()
		u.Memory = int64(gs.Limits.Memory) * mib * 2 / 5
		u.CPU = 12.5
		u.Network.Rx = 2048 + int64(up.Seconds())*1024
		u.Network.Tx = 1024 + int64(up.Seconds())*512
	case StateStarting, StateStopping:
		u.Memory = int64(gs.Limits.Memory) * mib / 10
		u.CPU = 85
	}
	return u
}

// loop prints a console line on each running server every
// ConsoleInterval and sends stats of every booted server to its viewers
// every StatsInterval, until Close.
func (s *Server) loop() {
	console := time.NewTicker(s.cfg.ConsoleInterval)
	defer console.Stop()
	stats := time.NewTicker(s.cfg.StatsInterval)
	defer stats.Stop()
	for {
		select {
		case <-s.Done():
			return
		case <-console.C:
			s.mu.Lock()
			for _, gs := range s.servers {
				if gs.State == StateRunning {
					gs.ticks++
					s.consoleLine(gs, fmt.Sprintf("[%s INFO]: Server tick %d", time.Now().UTC().Format("15:04:05"), gs.ticks))
				}
			}
			s.mu.Unlock()
		case <-stats.C:
			s.mu.Lock()
			for _, gs := range s.servers {
				if gs.State != StateOffline {
					s.broadcastStats(gs)
				}
			}
			s.mu.Unlock()
		}
	}
}

// broadcastStats sends the server's stats to its viewers; the lock must be
// held.
func (s *Server) broadcastStats(gs *serverState) {
	b, _ := json.Marshal(s.stats(gs))
	s.broadcast(gs, "stats", string(b))
}

// failedStatus is the status the panel gives a server whose install or,
// with reinstall, reinstall failed (ServerInstallController).
func failedStatus(reinstall bool) string {
	if reinstall {
		return StatusReinstallFailed
	}
	return StatusInstallFailed
}
