package tenantos

import (
	"context"
	"net/http"
	"time"
)

// Power sends a power action (PowerOn, PowerOff, PowerReset, PowerCycle)
// to the server's BMC. The panel answers once the BMC took it; the state
// changes later: poll PowerStatus. A method the server's power provider
// does not support is refused (400).
func (c *Client) Power(ctx context.Context, id int, method string) error {
	return c.call(ctx, "power."+method, http.MethodGet, powerPath(id, method), nil, nil)
}

// PowerStatus asks the BMC for the server's power state: "online" or
// "offline".
func (c *Client) PowerStatus(ctx context.Context, id int) (string, error) {
	var out flexString
	if err := c.call(ctx, "power."+powerStatusMethod, http.MethodGet, powerPath(id, powerStatusMethod), nil, &out); err != nil {
		return "", err
	}
	return string(out), nil
}

// Profile is an installable profile: an operating system, a rescue system
// (Rescue) or a tool such as a disk wipe.
type Profile struct {
	ID          int
	Name, Group string
	Rescue      bool
	DiskLayouts []DiskLayout
	Scripts     []Script
	// DefaultDiskLayout is used when a reinstallation names none.
	DefaultDiskLayout int
	// SetRootPassword says the profile needs a root password;
	// AllowSSHKeys and AllowHostname that it takes keys and a hostname.
	SetRootPassword, AllowSSHKeys, AllowHostname bool
}

// DiskLayout is a partitioning template of a profile.
type DiskLayout struct {
	ID   int
	Name string
}

// Script is a post-installation script a profile may run.
type Script struct {
	ID   int
	Name string
}

// idNameJSON is a disk layout or a script.
type idNameJSON struct {
	ID   flexInt    `json:"id"`
	Name flexString `json:"name"`
}

// profileJSON is a profile as getProfiles lists it.
type profileJSON struct {
	ID                flexInt      `json:"id"`
	Name              flexString   `json:"name"`
	Group             flexString   `json:"groupname"`
	IsRescue          flexBool     `json:"isRescue"`
	DiskLayouts       []idNameJSON `json:"disklayouts"`
	Scripts           []idNameJSON `json:"scripts"`
	DefaultDiskLayout flexInt      `json:"default_disklayout_template"`
	Features          struct {
		SetRootPassword flexBool `json:"set_root_password"`
		AllowSSHKeys    flexBool `json:"allow_ssh_keys"`
		AllowHostname   flexBool `json:"allow_set_hostname"`
	} `json:"features"`
}

// Profiles lists the profiles the server may be installed with.
func (c *Client) Profiles(ctx context.Context, id int) ([]Profile, error) {
	var out []profileJSON
	if err := c.call(ctx, "provisioning.getProfiles", http.MethodGet, provPath(id, provGetProfiles), nil, &out); err != nil {
		return nil, err
	}
	profiles := make([]Profile, 0, len(out))
	for _, j := range out {
		p := Profile{ID: int(j.ID), Name: string(j.Name), Group: string(j.Group), Rescue: bool(j.IsRescue),
			DefaultDiskLayout: int(j.DefaultDiskLayout), SetRootPassword: bool(j.Features.SetRootPassword),
			AllowSSHKeys: bool(j.Features.AllowSSHKeys), AllowHostname: bool(j.Features.AllowHostname)}
		for _, l := range j.DiskLayouts {
			p.DiskLayouts = append(p.DiskLayouts, DiskLayout{ID: int(l.ID), Name: string(l.Name)})
		}
		for _, s := range j.Scripts {
			p.Scripts = append(p.Scripts, Script{ID: int(s.ID), Name: string(s.Name)})
		}
		profiles = append(profiles, p)
	}
	return profiles, nil
}

// Reinstallation says what StartReinstallation installs. Zero values are
// not sent, leaving the panel's defaults.
type Reinstallation struct {
	ProfileID    int
	DiskLayoutID int
	// UserProvidedDiskLayout is a partitioning of the caller's own, in the
	// panel's format.
	UserProvidedDiskLayout string
	// RootPassword is a secret: it never appears in an error.
	RootPassword string
	Hostname     string
	SSHKeys      []string
	RunScripts   []int
	// ConfigureAllIPv4 and ConfigureAllIPv6 configure every assigned
	// address in the installed system; nil leaves the profile's default.
	ConfigureAllIPv4, ConfigureAllIPv6 *bool
	// InstallPowerAction is "", "restartAndPxeBoot" (the panel's default),
	// "restartOnly" or "noRestart".
	InstallPowerAction string
}

// StartReinstallation starts an install with a profile: an operating
// system, a rescue boot (a rescue profile) or a disk wipe. It runs on the
// panel: poll InstallStatus. The panel refuses a second one while one runs
// (400) and a suspended server (403). Call it again after a lost answer
// only once InstallStatus shows no install of this profile started since.
func (c *Client) StartReinstallation(ctx context.Context, id int, r Reinstallation) error {
	//lint:ignore S1016 the wire struct is a guess kept in wire.go; a conversion would tie the two together
	body := reinstallJSON{ProfileID: r.ProfileID, DiskLayoutID: r.DiskLayoutID, UserProvidedDiskLayout: r.UserProvidedDiskLayout,
		RootPassword: r.RootPassword, Hostname: r.Hostname, SSHKeys: r.SSHKeys, RunScripts: r.RunScripts,
		ConfigureAllIPv4: r.ConfigureAllIPv4, ConfigureAllIPv6: r.ConfigureAllIPv6, InstallPowerAction: r.InstallPowerAction}
	return c.call(ctx, "provisioning.startReinstallation", http.MethodPost, provPath(id, provStart), body, nil, r.RootPassword)
}

// InstallStatus is the progress of a server's last install, kept after it
// ends. With no install yet, every field is zero.
type InstallStatus struct {
	// ProfileID is the profile being (or last) installed.
	ProfileID int
	// Running is set until the install ends in Completed, Failed or
	// Cancelled.
	Running, Completed, Failed, Cancelled bool
	// CanCancel says StopReinstallation may stop it.
	CanCancel bool
	// Step is the number of the current (or last) step.
	Step  int
	Steps []InstallStep
	// ErrorMessage is the panel's explanation of a failure.
	ErrorMessage string
}

// InstallStep is one step of an install.
type InstallStep struct {
	Step        int
	Description string
	// Status is "running", "completed", "failed" or "cancelled".
	Status string
	// Time is when the step began, UTC, to the second.
	Time time.Time
}

// Started is when the install's first step began (zero when there is
// none): with ProfileID it identifies an install, so that a caller can
// tell the install it started from an earlier one.
func (s InstallStatus) Started() time.Time {
	var first *InstallStep
	for i := range s.Steps {
		if first == nil || s.Steps[i].Step < first.Step {
			first = &s.Steps[i]
		}
	}
	if first == nil {
		return time.Time{}
	}
	return first.Time
}

// installStatusJSON is getInstallStatus's result.
type installStatusJSON struct {
	ProfileID flexInt  `json:"profileId"`
	Running   flexBool `json:"running"`
	Completed flexBool `json:"completed"`
	Failed    flexBool `json:"failed"`
	Cancelled flexBool `json:"cancelled"`
	CanCancel flexBool `json:"canCancelInstallation"`
	Step      flexInt  `json:"step"`
	Progress  []struct {
		Step        flexInt    `json:"step"`
		Description flexString `json:"description"`
		Status      flexString `json:"status"`
		Time        flexString `json:"time"` // "2006-01-02 15:04:05", UTC
	} `json:"installProgress"`
	ErrorMessage flexString `json:"errorMessage"`
}

// InstallStatus reads the progress of the server's last install.
func (c *Client) InstallStatus(ctx context.Context, id int) (InstallStatus, error) {
	var out installStatusJSON
	if err := c.call(ctx, "provisioning.getInstallStatus", http.MethodGet, provPath(id, provInstallStatus), nil, &out); err != nil {
		return InstallStatus{}, err
	}
	st := InstallStatus{ProfileID: int(out.ProfileID), Running: bool(out.Running), Completed: bool(out.Completed),
		Failed: bool(out.Failed), Cancelled: bool(out.Cancelled), CanCancel: bool(out.CanCancel), Step: int(out.Step),
		ErrorMessage: string(out.ErrorMessage)}
	for _, p := range out.Progress {
		st.Steps = append(st.Steps, InstallStep{Step: int(p.Step), Description: string(p.Description),
			Status: string(p.Status), Time: parseTime(string(p.Time))})
	}
	return st, nil
}

// StopReinstallation aborts a running install, or leaves the rescue
// system, and resets the server unless withoutPowerReset. With nothing to
// stop it succeeds all the same, so it may be repeated.
func (c *Client) StopReinstallation(ctx context.Context, id int, withoutPowerReset bool) error {
	return c.call(ctx, "provisioning.stopReinstallation", http.MethodGet, provPath(id, provStop)+stopQuery(withoutPowerReset), nil, nil)
}

// ConsoleSession is a NoVNC console session.
type ConsoleSession struct {
	// AccessURL opens the console, only from the authorized IP and only
	// for a while. It is a credential: hand it to the user, do not log it.
	AccessURL string
}

// StartConsole starts a NoVNC console session that only authorizedIP may
// open ("" binds it to the caller, which is rarely what is wanted behind
// a proxy). mode is "" (the provider's default), "standard" or "web".
func (c *Client) StartConsole(ctx context.Context, id int, authorizedIP, mode string) (ConsoleSession, error) {
	var out consoleJSON
	if err := c.call(ctx, "console.start", http.MethodGet, consolePath(id)+consoleQuery(authorizedIP, mode), nil, &out); err != nil {
		return ConsoleSession{}, err
	}
	//lint:ignore S1016 the wire struct is a guess kept in wire.go; a conversion would tie the two together
	return ConsoleSession{AccessURL: out.AccessURL}, nil
}
