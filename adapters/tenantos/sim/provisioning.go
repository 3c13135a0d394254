package sim

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Profile kinds: what a startReinstallation with the profile does.
const (
	// KindOS installs an operating system.
	KindOS = "os"
	// KindRescue network-boots a rescue system until the next reboot.
	KindRescue = "rescue"
	// KindWipe erases the disks and powers the server off.
	KindWipe = "wipe"
)

// Profile is an installable profile as getProfiles lists it.
type Profile struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Group string `json:"group"`
	// Kind is KindOS, KindRescue or KindWipe.
	Kind        string       `json:"kind"`
	DiskLayouts []DiskLayout `json:"disklayouts"`
	Scripts     []Script     `json:"scripts"`
	// DefaultDiskLayout is used when a reinstallation names none.
	DefaultDiskLayout int `json:"defaultDiskLayout"`
	// SetRootPassword makes rootpassword required.
	SetRootPassword bool `json:"setRootPassword"`
	AllowSSHKeys    bool `json:"allowSshKeys"`
	AllowHostname   bool `json:"allowHostname"`
}

// DiskLayout is a partitioning template of a profile.
type DiskLayout struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// Script is a post-installation script a profile may run.
type Script struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// DemoProfiles are three operating systems, a rescue system and a disk
// wipe.
func DemoProfiles() []Profile {
	layouts := []DiskLayout{{2, "Automatic Partitioning"}, {4, "RAID 1"}, {8, "Install on largest disk"}}
	scripts := []Script{{2, "Install Docker"}}
	osProfile := func(id int, name, group string) Profile {
		return Profile{ID: id, Name: name, Group: group, Kind: KindOS, DiskLayouts: layouts, Scripts: scripts,
			DefaultDiskLayout: 2, SetRootPassword: true, AllowSSHKeys: true, AllowHostname: true}
	}
	return []Profile{
		osProfile(1, "Debian 12", "Debian"),
		osProfile(2, "Ubuntu 24.04", "Ubuntu"),
		osProfile(3, "Rocky Linux 9", "Rocky Linux"),
		{ID: 10, Name: "Rescue System (Debian Live)", Group: "Rescue", Kind: KindRescue, SetRootPassword: true, AllowSSHKeys: true},
		{ID: 20, Name: "Disk Wipe", Group: "Tools", Kind: KindWipe},
	}
}

func (p Profile) view() map[string]any {
	return map[string]any{
		"id": p.ID, "name": p.Name, "disklayouts": nonNil(p.DiskLayouts), "scripts": nonNil(p.Scripts),
		"isRescue": flag(p.Kind == KindRescue), "isPasswordResetProfile": 0,
		"features": map[string]any{"follow_install_progress": 1, "allow_ssh_keys": flag(p.AllowSSHKeys),
			"allow_set_hostname": flag(p.AllowHostname), "set_root_password": flag(p.SetRootPassword)},
		"default_disklayout_template": p.DefaultDiskLayout, "default_run_scripts": []int{},
		"groupname": p.Group, "grouplogo": "/storage/oslogos/default.png",
	}
}

// phases are the steps getInstallStatus walks through for each kind.
var phases = map[string][]string{
	KindOS: {"Preparing installation", "Restarting server into PXE", "Installer booted", "Partitioning disks",
		"Installing operating system", "Running post-installation scripts", "Rebooting into the installed system"},
	KindRescue: {"Preparing rescue system", "Restarting server into PXE", "Booting rescue system"},
	KindWipe:   {"Preparing disk wipe", "Restarting server into PXE", "Wiping disks", "Powering off"},
}

// install is one reinstallation, rescue boot or wipe. Its progress is
// computed from the clock.
type install struct {
	profile     Profile
	hostname    string
	powerAction string
	start       time.Time
	dur         time.Duration
	// failAt is the index of the phase that fails, -1 for none.
	failAt  int
	failure string
	// stopped is when stopReinstallation aborted it.
	stopped time.Time
	// settled is set once its end has been applied to the server.
	settled bool
}

func (in *install) phaseStart(i int) time.Time {
	return in.start.Add(in.dur * time.Duration(i) / time.Duration(len(phases[in.profile.Kind])))
}

func (in *install) end() time.Time {
	switch {
	case !in.stopped.IsZero():
		return in.stopped
	case in.failAt >= 0:
		return in.phaseStart(in.failAt + 1)
	}
	return in.start.Add(in.dur)
}

func (in *install) running(now time.Time) bool { return in != nil && in.end().After(now) }

// status is the install as getInstallStatus shows it.
func (in *install) status(now time.Time) map[string]any {
	if in == nil {
		return map[string]any{"installProgress": []any{}, "completed": 0, "canCancelInstallation": 0, "running": 0, "step": 0, "failed": 0, "cancelled": 0}
	}
	running, names := in.running(now), phases[in.profile.Kind]
	at := now
	if !running {
		at = in.end()
	}
	// A phase is reached once it starts; one that starts just as the install
	// ends is not.
	step := 0
	for step < len(names) && (in.phaseStart(step).Before(at) || running && in.phaseStart(step).Equal(at)) {
		step++
	}
	step = max(step, 1)
	cancelled := !running && !in.stopped.IsZero()
	failed := !running && !cancelled && in.failAt >= 0
	progress := make([]map[string]any, 0, step)
	for i := range step {
		state := "completed"
		if i == step-1 {
			switch {
			case running:
				state = "running"
			case failed:
				state = "failed"
			case cancelled:
				state = "cancelled"
			}
		}
		progress = append(progress, map[string]any{"step": i + 1, "description": names[i], "status": state,
			"time": in.phaseStart(i).UTC().Format(time.DateTime)})
	}
	out := map[string]any{
		"installProgress": progress, "completed": flag(!running && !cancelled && !failed),
		"canCancelInstallation": flag(running), "running": flag(running), "step": step,
		"failed": flag(failed), "cancelled": flag(cancelled), "profileId": in.profile.ID,
	}
	if failed {
		out["errorMessage"] = in.failure
	}
	return out
}

// finishInstall applies the end of the server's install; the lock must be
// held. A failed or aborted one changes nothing.
func (s *Server) finishInstall(m *machine) {
	in := m.install
	in.settled = true
	if !in.stopped.IsZero() || in.failAt >= 0 {
		return
	}
	switch in.profile.Kind {
	case KindOS:
		m.OS, m.Rescue = in.profile.Name, false
		if in.hostname != "" {
			m.Hostname = in.hostname
		}
		if in.powerAction != "noRestart" {
			m.Power = "online"
		}
	case KindRescue:
		m.Rescue, m.Power = true, "online"
	case KindWipe:
		m.OS, m.Power = "", "offline"
	}
}

func (s *Server) profile(id int) (Profile, bool) {
	i := slices.IndexFunc(s.cfg.Profiles, func(p Profile) bool { return p.ID == id })
	if i < 0 {
		return Profile{}, false
	}
	return s.cfg.Profiles[i], true
}

func (s *Server) getProfiles(*request) (any, error) {
	out := make([]map[string]any, 0, len(s.cfg.Profiles))
	for _, p := range s.cfg.Profiles {
		out = append(out, p.view())
	}
	return out, nil
}

// startReinstallation answers POST .../provisioning/startReinstallation.
// The profile decides what runs: an OS install, a rescue boot or a wipe.
// A TaskError fault makes it fail halfway through its phases.
func (s *Server) startReinstallation(q *request) (any, error) {
	v := newValidator(q.in)
	var p Profile
	known := false
	if v.required("profileId") {
		if id, ok := v.integer("profileId"); ok {
			if p, known = s.profile(id); !known {
				v.fail("profileId", "The selected :attribute is invalid.")
			}
		}
	}
	if !known || p.SetRootPassword {
		if v.required("rootpassword") {
			if pw, ok := v.str("rootpassword", 255); ok && len(pw) < 8 {
				v.fail("rootpassword", "The :attribute field must be at least 8 characters.")
			}
		}
	}
	if id, ok := v.integer("disklayoutId"); ok && known &&
		!slices.ContainsFunc(p.DiskLayouts, func(l DiskLayout) bool { return l.ID == id }) {
		v.fail("disklayoutId", "The selected :attribute is invalid.")
	}
	if ids, ok := v.intList("runScripts"); ok && known {
		for i, id := range ids {
			if !slices.ContainsFunc(p.Scripts, func(sc Script) bool { return sc.ID == id }) {
				v.fail("runScripts."+strconv.Itoa(i), "The selected :attribute is invalid.")
			}
		}
	}
	v.str("userprovidedDiskLayout", 65535)
	hostname, _ := v.str("hostname", 255)
	if hostname != "" && !hostnameRE.MatchString(hostname) {
		v.fail("hostname", "The :attribute field must be a valid hostname.")
	}
	v.stringList("sshkeys")
	v.boolean("configure_all_ipvfour")
	v.boolean("configure_all_ipvsix")
	powerAction, ok := v.oneOf("installPowerAction", "restartAndPxeBoot", "restartOnly", "noRestart")
	if !ok {
		powerAction = "restartAndPxeBoot"
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	m := q.m
	if len(m.SuspendedUserIDs) > 0 {
		return nil, &apiError{Status: http.StatusForbidden, Message: "The server is suspended."}
	}
	if m.install.running(q.now) {
		return nil, refuse("A reinstallation is already running for this server.")
	}
	if !p.AllowHostname {
		hostname = ""
	}
	in := &install{profile: p, hostname: hostname, powerAction: powerAction,
		start: q.now, dur: s.cfg.InstallDuration, failAt: -1}
	if q.c.taskError != "" {
		in.failAt, in.failure = len(phases[p.Kind])/2, q.c.taskError
	}
	m.install = in
	s.installs[m.ID]++
	if powerAction != "noRestart" {
		// Phase two restarts the server into the PXE installer.
		m.pending = &powerChange{method: "setPowerReset", at: in.phaseStart(1)}
	}
	return "ok", nil
}

func (s *Server) installStatus(q *request) (any, error) { return q.m.install.status(q.now), nil }

// stopReinstallation aborts a running install, or leaves the rescue
// system, and resets the server unless withoutPowerReset=1. With nothing to
// stop it answers "ok" all the same.
func (s *Server) stopReinstallation(q *request) (any, error) {
	m := q.m
	running := m.install.running(q.now)
	if !running && !m.Rescue {
		return "ok", nil
	}
	if running {
		m.install.stopped = q.now
		s.settle(m, q.now)
	}
	m.pending = nil
	if reset, _ := toInt(q.in["withoutPowerReset"]); reset != 1 {
		s.schedulePower(m, "setPowerReset", "", q.now)
	}
	return "ok", nil
}
