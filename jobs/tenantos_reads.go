package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/tenantos"
	"github.com/hostfleet/provisiond/queries"
)

// This file holds the Tenantos provider's live reads, which the API
// answers from (the server, its profiles, status, traffic, statistics and
// the console). Each reads the service's server only after checking that
// it carries the service's mark (see serviceServer).

// BareMetalServer is a service's Tenantos server as the API shows it.
type BareMetalServer struct {
	ServerID   int    `json:"serverId"`
	ServerName string `json:"serverName"`
	Hostname   string `json:"hostname"`
	OS         string `json:"os"`
	// Power is Tenantos' power state: online, offline, or "" when unknown.
	Power        string                `json:"power"`
	Suspended    bool                  `json:"suspended"`
	Installing   bool                  `json:"installing"`
	Rescue       bool                  `json:"rescue"`
	DiskWipe     bool                  `json:"diskWipe"`
	PrimaryIP    string                `json:"primaryIp"`
	IPs          []BareMetalIPView     `json:"ips"`
	Hardware     BareMetalHardware     `json:"hardware"`
	Installation BareMetalInstallation `json:"installation"`
}

// BareMetalIPView is an address assigned to the server.
type BareMetalIPView struct {
	IP      string `json:"ip"`
	CIDR    int    `json:"cidr"`
	Gateway string `json:"gateway"`
	Primary bool   `json:"primary"`
	IPv6    bool   `json:"ipv6"`
}

// BareMetalHardware is the server's inventory.
type BareMetalHardware struct {
	Mainboard     string          `json:"mainboard"`
	CPUModel      string          `json:"cpuModel"`
	CPUMHz        int             `json:"cpuMhz"`
	CPUCores      int             `json:"cpuCores"`
	CPUThreads    int             `json:"cpuThreads"`
	MemoryMB      int             `json:"memoryMb"`
	MemoryModules int             `json:"memoryModules"`
	Disks         []BareMetalDisk `json:"disks"`
}

// BareMetalDisk is one of the server's drives.
type BareMetalDisk struct {
	Model   string `json:"model"`
	SizeMiB int    `json:"sizeMib"`
}

// BareMetalInstallation is the server's last install (an OS, a rescue
// boot or a wipe) as Tenantos follows it.
type BareMetalInstallation struct {
	ProfileID    int                 `json:"profileId"`
	Running      bool                `json:"running"`
	Completed    bool                `json:"completed"`
	Failed       bool                `json:"failed"`
	Cancelled    bool                `json:"cancelled"`
	Step         int                 `json:"step"`
	Steps        []BareMetalStepView `json:"steps"`
	ErrorMessage string              `json:"errorMessage,omitempty"`
}

// BareMetalStepView is one phase of an install.
type BareMetalStepView struct {
	Step        int       `json:"step"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	Time        time.Time `json:"time"`
}

// serviceServer reads the service's server for a live read. A server found
// gone or not the service's marks the service needs_repair (unless a job
// is changing it: ErrServiceBusy).
func (w *BareMetalWorkers) serviceServer(ctx context.Context, svc *queries.Service, log *slog.Logger) (tenantos.Server, error) {
	srv, err := w.ownServer(ctx, svc)
	if !errors.Is(err, ErrNeedsRepair) {
		return srv, err
	}
	n, ferr := w.Queries.FlagServiceNeedsRepair(ctx, queries.FlagServiceNeedsRepairParams{ID: svc.ID, RepairReason: failure.UserMessage(err)})
	if ferr != nil {
		return srv, fmt.Errorf("mark service %s needs_repair: %w", svc.ID, ferr)
	}
	if n == 0 && svc.Status != "needs_repair" {
		return srv, ErrServiceBusy
	}
	log.Warn("a read found the service's server gone or not its own", "err", err)
	svc.Status, svc.RepairReason = "needs_repair", failure.UserMessage(err)
	return srv, err
}

// Server reads the service's server and its last install.
func (w *BareMetalWorkers) Server(ctx context.Context, svc *queries.Service, log *slog.Logger) (BareMetalServer, error) {
	srv, err := w.serviceServer(ctx, svc, log)
	if err != nil {
		return BareMetalServer{}, err
	}
	st, err := w.Tenantos.InstallStatus(ctx, srv.ID)
	if err != nil {
		return BareMetalServer{}, err
	}
	h := srv.Hardware
	out := BareMetalServer{ServerID: srv.ID, ServerName: srv.ServerName, Hostname: srv.Hostname, OS: srv.OS, Power: srv.Power,
		Suspended: srv.Suspended, Installing: srv.ReinstallationRunning, Rescue: srv.RescueBootRunning, DiskWipe: srv.DiskWipeRunning,
		PrimaryIP: srv.PrimaryIP, IPs: []BareMetalIPView{},
		Hardware: BareMetalHardware{Mainboard: h.Mainboard, CPUModel: h.CPUModel, CPUMHz: h.CPUMHz, CPUCores: h.CPUCores,
			CPUThreads: h.CPUThreads, MemoryMB: h.MemoryMB, MemoryModules: h.MemoryModules, Disks: []BareMetalDisk{}},
		Installation: BareMetalInstallation{ProfileID: st.ProfileID, Running: st.Running, Completed: st.Completed, Failed: st.Failed,
			Cancelled: st.Cancelled, Step: st.Step, Steps: []BareMetalStepView{}, ErrorMessage: st.ErrorMessage}}
	for _, a := range srv.IPs {
		out.IPs = append(out.IPs, BareMetalIPView{IP: a.IP, CIDR: a.CIDR, Gateway: a.Gateway, Primary: a.Primary, IPv6: a.IPv6})
	}
	for _, d := range h.Disks {
		out.Hardware.Disks = append(out.Hardware.Disks, BareMetalDisk{Model: d.Model, SizeMiB: d.SizeMiB})
	}
	for _, s := range st.Steps {
		out.Installation.Steps = append(out.Installation.Steps, BareMetalStepView{Step: s.Step, Description: s.Description, Status: s.Status, Time: s.Time})
	}
	return out, nil
}

// BareMetalProfile is what a server may be installed with.
type BareMetalProfile struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Group string `json:"group"`
	// Rescue profiles boot a rescue system (POST .../bare-metal/rescue);
	// the others install (POST .../bare-metal/reinstall).
	Rescue            bool            `json:"rescue"`
	DiskLayouts       []BareMetalItem `json:"diskLayouts"`
	Scripts           []BareMetalItem `json:"scripts"`
	DefaultDiskLayout int             `json:"defaultDiskLayoutId"`
	RootPassword      bool            `json:"rootPassword"`
	SSHKeys           bool            `json:"sshKeys"`
	Hostname          bool            `json:"hostname"`
}

// BareMetalItem is a disk layout or a script of a profile.
type BareMetalItem struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// Profiles lists the profiles (OS installs, rescue systems) the service's
// server may use. The wipe profile is the fleet's, not the customer's.
func (w *BareMetalWorkers) Profiles(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]BareMetalProfile, error) {
	srv, err := w.serviceServer(ctx, svc, log)
	if err != nil {
		return nil, err
	}
	return w.profilesOf(ctx, srv.ID)
}

// profilesOf lists the profiles a server offers customers.
func (w *BareMetalWorkers) profilesOf(ctx context.Context, serverID int) ([]BareMetalProfile, error) {
	ps, err := w.Tenantos.Profiles(ctx, serverID)
	if err != nil {
		return nil, err
	}
	out := make([]BareMetalProfile, 0, len(ps))
	for _, p := range ps {
		if p.ID == w.WipeProfile && w.WipeProfile > 0 {
			continue
		}
		bp := BareMetalProfile{ID: p.ID, Name: p.Name, Group: p.Group, Rescue: p.Rescue, DefaultDiskLayout: p.DefaultDiskLayout,
			RootPassword: p.SetRootPassword, SSHKeys: p.AllowSSHKeys, Hostname: p.AllowHostname,
			DiskLayouts: []BareMetalItem{}, Scripts: []BareMetalItem{}}
		for _, l := range p.DiskLayouts {
			bp.DiskLayouts = append(bp.DiskLayouts, BareMetalItem{ID: l.ID, Name: l.Name})
		}
		for _, s := range p.Scripts {
			bp.Scripts = append(bp.Scripts, BareMetalItem{ID: s.ID, Name: s.Name})
		}
		out = append(out, bp)
	}
	return out, nil
}

// CheckInstall checks an install against the profiles the service's
// server offers and returns what is wrong with it: the profile must exist
// and be of the kind asked for (rescue or not), the disk layout and
// scripts must be the profile's, and a root password must come when the
// profile sets one.
func (w *BareMetalWorkers) CheckInstall(ctx context.Context, svc *queries.Service, in BareMetalInstall, hasPassword, rescue bool, log *slog.Logger) ([]string, error) {
	profiles, err := w.Profiles(ctx, svc, log)
	if err != nil {
		return nil, err
	}
	return checkInstall(profiles, in, hasPassword, rescue), nil
}

// CheckOrder checks a new service's install as CheckInstall does, against
// the profiles of the server the plan names or of the first free one of
// its pool; with none free it cannot tell, and the provision checks it.
func (w *BareMetalWorkers) CheckOrder(ctx context.Context, plan BareMetalPlan, in BareMetalInstall, hasPassword bool) ([]string, error) {
	id := plan.ServerID
	if id == 0 {
		free, err := w.Tenantos.ServersByTags(ctx, w.poolTags(plan))
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(free, func(s tenantos.Server) bool { _, marked := markOf(s); return !marked })
		if i < 0 {
			return nil, nil
		}
		id = free[i].ID
	}
	profiles, err := w.profilesOf(ctx, id)
	if errors.Is(err, tenantos.ErrNotFound) {
		return []string{fmt.Sprintf("plan.serverId: Tenantos has no server %d", id)}, nil
	}
	if err != nil {
		return nil, err
	}
	return checkInstall(profiles, in, hasPassword, false), nil
}

func checkInstall(profiles []BareMetalProfile, in BareMetalInstall, hasPassword, rescue bool) []string {
	i := slices.IndexFunc(profiles, func(p BareMetalProfile) bool { return p.ID == in.ProfileID && p.Rescue == rescue })
	if i < 0 {
		what := "an installable profile"
		if rescue {
			what = "a rescue profile"
		}
		return []string{fmt.Sprintf("profileId must name %s of this server (GET /api/services/{id}/bare-metal/profiles lists them)", what)}
	}
	p := profiles[i]
	var errs []string
	has := func(items []BareMetalItem, id int) bool {
		return slices.ContainsFunc(items, func(it BareMetalItem) bool { return it.ID == id })
	}
	if in.DiskLayoutID != 0 && !has(p.DiskLayouts, in.DiskLayoutID) {
		errs = append(errs, "diskLayoutId must be one of the profile's disk layouts")
	}
	for _, id := range in.RunScripts {
		if !has(p.Scripts, id) {
			errs = append(errs, "runScripts must name the profile's scripts; "+strconv.Itoa(id)+" is not one")
			break
		}
	}
	if p.RootPassword && !hasPassword && !rescue {
		errs = append(errs, "rootPassword is required for this profile")
	}
	if !p.SSHKeys && len(in.SSHKeys) > 0 {
		errs = append(errs, "this profile takes no sshKeys")
	}
	return errs
}

// BareMetalStatus is a bare-metal service's live state.
type BareMetalStatus struct {
	PowerState string `json:"powerState"`
	Suspended  bool   `json:"suspended"`
	Installing bool   `json:"installing"`
	Rescue     bool   `json:"rescue"`
}

// LiveStatus implements LiveReader: the server's power state (from its
// BMC) and what it runs (a BareMetalStatus).
func (w *BareMetalWorkers) LiveStatus(ctx context.Context, svc *queries.Service, log *slog.Logger) (any, error) {
	srv, err := w.serviceServer(ctx, svc, log)
	if err != nil {
		return nil, err
	}
	power, err := w.Tenantos.PowerStatus(ctx, srv.ID)
	if err != nil {
		return nil, err
	}
	return BareMetalStatus{PowerState: cmp.Or(powerStates[power], "unknown"), Suspended: srv.Suspended,
		Installing: srv.ReinstallationRunning || srv.DiskWipeRunning, Rescue: srv.RescueBootRunning}, nil
}

// Traffic implements LiveReader: the server's switch-port traffic over the
// timeframe (one of Timeframes), summed over its ports.
func (w *BareMetalWorkers) Traffic(ctx context.Context, svc *queries.Service, timeframe string, log *slog.Logger) (Traffic, error) {
	srv, err := w.serviceServer(ctx, svc, log)
	if err != nil {
		return Traffic{}, err
	}
	stats, err := w.Tenantos.Stats(ctx, srv.ID, "network", "graph", tenantos.StatsQuery{Predefined: bareMetalTimeframes[timeframe]})
	if err != nil {
		return Traffic{}, err
	}
	byTime := map[time.Time]*TrafficPoint{}
	var times []time.Time
	for _, port := range stats.Ports {
		for _, p := range port.Points {
			tp := byTime[p.Timestamp]
			if tp == nil {
				tp = &TrafficPoint{Time: p.Timestamp.UTC()}
				byTime[p.Timestamp] = tp
				times = append(times, p.Timestamp)
			}
			tp.InBytesPerSecond += float64(p.BytesIn)
			tp.OutBytesPerSecond += float64(p.BytesOut)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	t := Traffic{Timeframe: timeframe, Points: make([]TrafficPoint, 0, len(times))}
	var in, out float64
	for i, at := range times {
		p := byTime[at]
		t.Points = append(t.Points, *p)
		if i > 0 {
			step := at.Sub(times[i-1]).Seconds()
			in, out = in+p.InBytesPerSecond*step, out+p.OutBytesPerSecond*step
		}
	}
	t.Totals.InBytes, t.Totals.OutBytes = int64(in), int64(out)
	return t, nil
}

// BareMetalStats is a statistics read of the server: per switch port for
// network, points for the other categories (BareMetalStatsCategories).
type BareMetalStats struct {
	Category string                `json:"category"`
	Mode     string                `json:"mode"`
	Ports    []BareMetalStatsPort  `json:"ports,omitempty"`
	Points   []BareMetalStatsPoint `json:"points,omitempty"`
}

// BareMetalStatsPort is the traffic of one of the server's switch ports.
type BareMetalStatsPort struct {
	Switch string                `json:"switch"`
	Port   string                `json:"port"`
	Points []BareMetalStatsPoint `json:"points"`
}

// BareMetalStatsPoint is a point of a graph or a day of a summary; only
// its category's fields are set.
type BareMetalStatsPoint = tenantos.StatsPoint

// BareMetalStatsQuery is the range statistics are read over.
type BareMetalStatsQuery = tenantos.StatsQuery

// BareMetalStatsCategories are the categories Stats reads.
var BareMetalStatsCategories = tenantos.StatsCategories

// Stats reads the server's statistics of a category ("graph" points or
// "text" daily summaries).
func (w *BareMetalWorkers) Stats(ctx context.Context, svc *queries.Service, category, mode string, q BareMetalStatsQuery, log *slog.Logger) (BareMetalStats, error) {
	srv, err := w.serviceServer(ctx, svc, log)
	if err != nil {
		return BareMetalStats{}, err
	}
	st, err := w.Tenantos.Stats(ctx, srv.ID, category, mode, q)
	if err != nil {
		return BareMetalStats{}, err
	}
	out := BareMetalStats{Category: category, Mode: mode, Points: st.Points}
	if category == "network" {
		out.Ports = []BareMetalStatsPort{}
		for _, p := range st.Ports {
			out.Ports = append(out.Ports, BareMetalStatsPort{Switch: p.Switch, Port: p.Port, Points: append([]BareMetalStatsPoint{}, p.Points...)})
		}
	} else if out.Points == nil {
		out.Points = []BareMetalStatsPoint{}
	}
	return out, nil
}

// BareMetalConsole is a NoVNC session on the server's BMC.
type BareMetalConsole struct {
	URL string `json:"url"`
	// AuthorizedIP is the only address Tenantos lets open the URL.
	AuthorizedIP string `json:"authorizedIp"`
}

// Console starts a NoVNC session that only clientIP may open.
func (w *BareMetalWorkers) Console(ctx context.Context, svc *queries.Service, clientIP, mode string, log *slog.Logger) (BareMetalConsole, error) {
	srv, err := w.serviceServer(ctx, svc, log)
	if err != nil {
		return BareMetalConsole{}, err
	}
	s, err := w.Tenantos.StartConsole(ctx, srv.ID, clientIP, mode)
	if err != nil {
		return BareMetalConsole{}, err
	}
	return BareMetalConsole{URL: s.AccessURL, AuthorizedIP: clientIP}, nil
}
