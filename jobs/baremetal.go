package jobs

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/tenantos"
	"github.com/hostfleet/provisiond/queries"
)

// This file holds the bare-metal job kinds (baremetal.*), carried out on
// Tenantos servers: provision (take a server from the pool and install
// it), reinstall and rescue. The provider's capabilities are in
// tenantos.go, its live reads in tenantos_reads.go.

// BareMetalPlan is a bare-metal service's plan, stored in services.plan:
// which server it takes and what it is given besides its own addresses.
type BareMetalPlan struct {
	// ServerID names the Tenantos server to take; 0 takes a free one
	// from the pool (servers with every one of Tags).
	ServerID int `json:"serverId,omitempty"`
	// Tags select the pool; default the provider's PoolTags.
	Tags []string `json:"tags,omitempty"`
	// User is the Tenantos user who owns the server for the customer;
	// 0 leaves its owner.
	User int `json:"user,omitempty"`
	// IPs are further addresses assigned to the server for the service,
	// removed again when it ends.
	IPs []BareMetalIP `json:"ips,omitempty"`
}

// BareMetalIP is an address assigned to a server.
type BareMetalIP struct {
	IP      string `json:"ip"`
	CIDR    int    `json:"cidr,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// BareMetalRef is the Tenantos server a service holds.
type BareMetalRef struct {
	ServerID int `json:"serverId"`
	// PoolOwner is the Tenantos user who owned the server in the pool,
	// recorded before it is given to the plan's user: it gets the server
	// back (unless PoolUser says otherwise).
	PoolOwner int `json:"poolOwner,omitempty"`
}

// BareMetalInstall is what a server is installed with (Tenantos'
// startReinstallation); the root password is sealed apart (InstallSecrets).
type BareMetalInstall struct {
	ProfileID              int      `json:"profileId"`
	DiskLayoutID           int      `json:"diskLayoutId,omitempty"`
	UserProvidedDiskLayout string   `json:"userProvidedDiskLayout,omitempty"`
	Hostname               string   `json:"hostname,omitempty"`
	SSHKeys                []string `json:"sshKeys,omitempty"`
	RunScripts             []int    `json:"runScripts,omitempty"`
	ConfigureAllIPv4       *bool    `json:"configureAllIpv4,omitempty"`
	ConfigureAllIPv6       *bool    `json:"configureAllIpv6,omitempty"`
	// InstallPowerAction is restartAndPxeBoot (the default), restartOnly or
	// noRestart (the operator boots the installer).
	InstallPowerAction string `json:"installPowerAction,omitempty"`
}

// BareMetalPowerActions are Tenantos' names for what PowerActions mean on
// a bare-metal server (IPMI): a restart is a power cycle, a reset a hard
// reset, a stop and a kill both cut the power.
var BareMetalPowerActions = map[string]string{
	"on": "start", "off": "stop", "reset": "reset", "cycle": "restart",
}

// BareMetalPlanOf reads a bare-metal service's plan.
func BareMetalPlanOf(svc *queries.Service) (BareMetalPlan, error) {
	var p BareMetalPlan
	if err := json.Unmarshal(svc.Plan, &p); err != nil {
		return p, permanent("plan", "the service's plan is unreadable")
	}
	return p, nil
}

// TenantosRef reads the server a bare-metal service holds.
func TenantosRef(svc *queries.Service) (BareMetalRef, error) {
	var ref BareMetalRef
	if err := json.Unmarshal(svc.ProviderRef, &ref); err != nil || ref.ServerID <= 0 {
		return ref, permanent("tenantos", "the service has no server yet")
	}
	return ref, nil
}

// markPrefix starts the tag that marks a server as a service's: only the
// fleet sets it, so it is proof enough that the server is the service's.
const markPrefix = "provisiond-service:"

// ServiceMark is the tag marking a server as the service's.
func ServiceMark(id uuid.UUID) string { return markPrefix + id.String() }

// markOf returns the service a server is marked for.
func markOf(s tenantos.Server) (uuid.UUID, bool) {
	for _, t := range s.Tags {
		if rest, ok := strings.CutPrefix(t, markPrefix); ok {
			id, err := uuid.Parse(rest)
			return id, err == nil
		}
	}
	return uuid.Nil, false
}

// ipDescription marks an address assigned for a service, so that only
// those go when it ends.
func ipDescription(id uuid.UUID) string { return "provisiond " + id.String() }

// BareMetalProvisionArgs ask for a server for a pending bare-metal service,
// installed with Install.
type BareMetalProvisionArgs struct {
	ServiceID uuid.UUID        `json:"serviceId"`
	Install   BareMetalInstall `json:"install"`
}

// Kind implements Args.
func (BareMetalProvisionArgs) Kind() string { return "baremetal.provision" }

// InsertOpts gives an install on real hardware its time.
func (BareMetalProvisionArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: 2 * time.Hour, Mutating: true}
}

// BareMetalReinstallArgs ask for a server to be installed afresh; its
// disks' contents are lost.
type BareMetalReinstallArgs struct {
	ServiceID uuid.UUID        `json:"serviceId"`
	Install   BareMetalInstall `json:"install"`
}

// Kind implements Args.
func (BareMetalReinstallArgs) Kind() string { return "baremetal.reinstall" }

// InsertOpts implements ArgsWithInsertOpts.
func (BareMetalReinstallArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueDefault, MaxAttempts: 15, Timeout: 2 * time.Hour, Mutating: true}
}

// BareMetalRescueArgs ask for a server to boot its rescue system (a
// reinstallation with a rescue profile), or to leave it.
type BareMetalRescueArgs struct {
	ServiceID uuid.UUID `json:"serviceId"`
	Enable    bool      `json:"enable"`
	// ProfileID is the rescue profile to boot.
	ProfileID int `json:"profileId,omitempty"`
	// Message says why, for the job's log.
	Message string `json:"message,omitempty"`
}

// Kind implements Args.
func (BareMetalRescueArgs) Kind() string { return "baremetal.rescue" }

// InsertOpts puts rescue on the critical queue: the customer is locked out.
func (BareMetalRescueArgs) InsertOpts() InsertOpts {
	return InsertOpts{Queue: QueueCritical, MaxAttempts: 10, Timeout: time.Hour, Mutating: true}
}

// BareMetalResult is what a finished bare-metal install reports.
type BareMetalResult struct {
	ServerID  int    `json:"serverId"`
	ProfileID int    `json:"profileId"`
	OS        string `json:"os,omitempty"`
}

// BareMetalWorkers carries out bare-metal jobs on one Tenantos panel.
type BareMetalWorkers struct {
	Queries  *queries.Queries
	Tenantos *tenantos.Client
	// PoolTags are the tags of servers free for the taking; a server taken
	// loses them and gets them back when its service ends. Default
	// "For Rent".
	PoolTags []string
	// PoolUser, when set, is the Tenantos user a server returned to the
	// pool belongs to.
	PoolUser int
	// WipeProfile, when set, is the Tenantos profile (a disk wipe) a
	// terminated service's server runs before it returns to the pool.
	WipeProfile int
	// PollInterval is how often an install's or a power change's progress
	// is read; default 5s.
	PollInterval time.Duration
}

func (w *BareMetalWorkers) pollInterval() time.Duration { return cmp.Or(w.PollInterval, 5*time.Second) }

// poolTags are the tags a server must carry to be taken: the provider's
// pool, narrowed by the plan's tags (a location, a hardware class). A plan
// never widens the pool: servers outside it are other customers'.
func (w *BareMetalWorkers) poolTags(plan BareMetalPlan) []string {
	tags := slices.Clone(w.PoolTags)
	if len(tags) == 0 {
		tags = []string{"For Rent"}
	}
	for _, t := range plan.Tags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags
}

// pool are the provider's own pool tags, which a server loses when it is
// taken and gets back when it returns.
func (w *BareMetalWorkers) pool() []string { return w.poolTags(BareMetalPlan{}) }

// notOwn is the error of a job or read that found the service's server
// gone or not its own: nothing was changed, and the service needs repair.
func notOwn(op, msg string, err error) error {
	return &failure.Error{Class: failure.Permanent, Provider: tenantos.Provider, Op: op, Message: msg, Err: err}
}

// errServerGone is wrapped by notOwn's error for a server Tenantos no
// longer has; it wraps ErrNeedsRepair.
var errServerGone = fmt.Errorf("the server is gone: %w", ErrNeedsRepair)

// ownServer reads the service's server and checks that it carries the
// service's mark.
func (w *BareMetalWorkers) ownServer(ctx context.Context, svc *queries.Service) (tenantos.Server, error) {
	ref, err := TenantosRef(svc)
	if err != nil {
		return tenantos.Server{}, err
	}
	srv, err := w.Tenantos.Server(ctx, ref.ServerID)
	if errors.Is(err, tenantos.ErrNotFound) {
		return srv, notOwn("verify", fmt.Sprintf("server %d no longer exists at Tenantos; nothing was changed", ref.ServerID), errServerGone)
	}
	if err != nil {
		return srv, err
	}
	if id, _ := markOf(srv); id != svc.ID {
		return srv, notOwn("verify", fmt.Sprintf("server %d does not carry this service's mark (the tag %s); nothing was changed", ref.ServerID, ServiceMark(svc.ID)), ErrNeedsRepair)
	}
	return srv, nil
}

// Provision implements Worker for BareMetalProvisionArgs: it takes a
// server (recorded first, so that no other service takes it), marks it
// the service's at Tenantos, assigns the plan's addresses, installs it and
// waits until it is up. A cancelled provision gives the server back.
func (w *BareMetalWorkers) Provision(ctx context.Context, job *Job[BareMetalProvisionArgs]) error {
	if job.Service == nil || job.Service.Provider != tenantos.Provider {
		return permanent(job.Args.Kind(), "provision needs a Tenantos service")
	}
	svc := job.Service
	plan, err := BareMetalPlanOf(svc)
	if err != nil {
		return err
	}
	var secrets InstallSecrets
	if _, err := job.OpenSecrets(&secrets); err != nil {
		return err
	}
	err = job.Steps(ctx,
		Step{"claim", func(ctx context.Context) error { return w.claim(ctx, job.Run, svc, plan) }},
		Step{"mark", func(ctx context.Context) error { return w.mark(ctx, svc, plan) }},
		Step{"ips", func(ctx context.Context) error { return w.assignIPs(ctx, svc, plan) }},
		Step{"install", func(ctx context.Context) error {
			return w.startInstall(ctx, job.Run, svc, job.Args.Install, secrets.Password, false)
		}},
		Step{"wait", func(ctx context.Context) error {
			_, err := w.followInstall(ctx, job.Run, svc, job.Args.Install.ProfileID, true)
			return err
		}},
		Step{"up", func(ctx context.Context) error { return w.waitUp(ctx, svc, job.Args.Install) }},
	)
	if err != nil {
		err = w.provisionStopped(ctx, job, err)
		var stopped *StoppedError
		if _, held := TenantosRef(svc); held == nil && ctx.Err() == nil && !errors.As(err, &stopped) && !errors.Is(err, ErrCancelled) {
			// Should this be its last attempt, the server it holds is left
			// to repair (a reinstall) or to the service's cancellation.
			return fmt.Errorf("%w (%w)", err, ErrNeedsRepair)
		}
		return err
	}
	ref, _ := TenantosRef(svc)
	b, _ := json.Marshal(ref)
	if err := w.Queries.SetServiceProvisioned(ctx, queries.SetServiceProvisionedParams{ID: svc.ID, ProviderRef: b}); err != nil {
		return fmt.Errorf("record the server: %w", err)
	}
	job.SetResult(BareMetalResult{ServerID: ref.ServerID, ProfileID: job.Args.Install.ProfileID})
	return nil
}

// claim records the server the service takes: the one the plan names, or
// the first free one of the pool. The database's unique index decides
// between provisions racing for one server; a server carrying another
// service's mark is never taken.
func (w *BareMetalWorkers) claim(ctx context.Context, run *Run, svc *queries.Service, plan BareMetalPlan) error {
	if svc.Status != "pending" {
		return permanent("claim", "the service is "+svc.Status+", not pending")
	}
	if ref, err := TenantosRef(svc); err == nil {
		run.log.Info("the service holds its server already", "server", ref.ServerID)
		return nil
	}
	var candidates []tenantos.Server
	if plan.ServerID > 0 {
		srv, err := w.Tenantos.Server(ctx, plan.ServerID)
		if errors.Is(err, tenantos.ErrNotFound) {
			return permanent("claim", fmt.Sprintf("server %d does not exist at Tenantos", plan.ServerID))
		}
		if err != nil {
			return err
		}
		candidates = []tenantos.Server{srv}
	} else {
		var err error
		if candidates, err = w.Tenantos.ServersByTags(ctx, w.poolTags(plan)); err != nil {
			return err
		}
		slices.SortFunc(candidates, func(a, b tenantos.Server) int { return a.ID - b.ID })
	}
	for _, srv := range candidates {
		if id, marked := markOf(srv); marked && id != svc.ID {
			continue
		}
		if !containsAll(srv.Tags, w.poolTags(plan)) || srv.Suspended || srv.ReinstallationRunning || srv.DiskWipeRunning {
			continue
		}
		n, err := w.Queries.ClaimTenantosServer(ctx, queries.ClaimTenantosServerParams{ID: svc.ID, ServerID: int32(srv.ID)})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			continue // another service holds it
		}
		if err != nil {
			return fmt.Errorf("claim server %d: %w", srv.ID, err)
		}
		if n == 0 {
			return permanent("claim", "the service is no longer pending")
		}
		svc.ProviderRef, _ = json.Marshal(BareMetalRef{ServerID: srv.ID})
		run.log.Info("server claimed", "server", srv.ID)
		return nil
	}
	if plan.ServerID > 0 {
		return permanent("claim", fmt.Sprintf("server %d is not free: it is not in the pool (tags %q), is another service's, suspended or installing", plan.ServerID, w.poolTags(plan)))
	}
	// The pool may fill again (a termination gives a server back).
	return &failure.Error{Class: failure.Transient, Provider: tenantos.Provider, Op: "claim", RetryAfter: time.Minute,
		Message: fmt.Sprintf("no free server has the tags %q", w.poolTags(plan))}
}

func containsAll(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// mark tags the claimed server as the service's, out of the pool, and
// gives it to the plan's user; it checks that Tenantos shows the mark.
func (w *BareMetalWorkers) mark(ctx context.Context, svc *queries.Service, plan BareMetalPlan) error {
	ref, err := TenantosRef(svc)
	if err != nil {
		return err
	}
	srv, err := w.Tenantos.Server(ctx, ref.ServerID)
	if err != nil {
		return err
	}
	id, marked := markOf(srv)
	switch {
	case marked && id != svc.ID:
		return permanent("mark", fmt.Sprintf("server %d was taken by another service meanwhile", ref.ServerID))
	case !marked && (!containsAll(srv.Tags, w.poolTags(plan)) || srv.Suspended):
		// Taken out of the pool (by an operator) since the claim.
		return permanent("mark", fmt.Sprintf("server %d left the pool before it was marked", ref.ServerID))
	}
	if !marked && plan.User > 0 && ref.PoolOwner == 0 && srv.UserID != plan.User {
		// Recorded before the owner changes, so that a retry never
		// mistakes the customer for the pool's owner.
		ref.PoolOwner = srv.UserID
		b, _ := json.Marshal(ref)
		if err := w.Queries.SetServiceProviderRef(ctx, queries.SetServiceProviderRefParams{ID: svc.ID, ProviderRef: b}); err != nil {
			return fmt.Errorf("record the pool's owner: %w", err)
		}
		svc.ProviderRef = b
	}
	tags := []string{ServiceMark(svc.ID)}
	for _, t := range srv.Tags {
		if !slices.Contains(w.pool(), t) && !strings.HasPrefix(t, markPrefix) {
			tags = append(tags, t)
		}
	}
	u := tenantos.ServerUpdate{Tags: &tags}
	if plan.User > 0 {
		u.UserID = &plan.User
	}
	if srv, err = w.Tenantos.UpdateServer(ctx, ref.ServerID, u); err != nil {
		return err
	}
	if id, _ := markOf(srv); id != svc.ID {
		return &failure.Error{Class: failure.Transient, Provider: tenantos.Provider, Op: "mark.check",
			Message: fmt.Sprintf("server %d does not show the service's mark after it was set", ref.ServerID), Err: errChangeNotSeen}
	}
	return nil
}

// assignIPs assigns the plan's addresses the server does not have yet,
// described as the service's.
func (w *BareMetalWorkers) assignIPs(ctx context.Context, svc *queries.Service, plan BareMetalPlan) error {
	if len(plan.IPs) == 0 {
		return nil
	}
	srv, err := w.ownServer(ctx, svc)
	if err != nil {
		return err
	}
	have, err := w.Tenantos.IPAssignments(ctx, srv.ID)
	if err != nil {
		return err
	}
	for _, ip := range plan.IPs {
		if slices.ContainsFunc(have, func(a tenantos.IPAssignment) bool { return a.IP == ip.IP }) {
			continue
		}
		if _, err := w.Tenantos.AddIPAssignment(ctx, srv.ID, tenantos.NewIPAssignment{
			IP: ip.IP, CIDR: ip.CIDR, Gateway: ip.Gateway, Description: ipDescription(svc.ID)}); err != nil {
			return err
		}
	}
	return nil
}

// checkProfile refuses a profile the server does not offer, one of the
// other kind (a rescue system for an install, or the reverse) and the
// fleet's wipe profile: each would leave the server in a state the job
// does not expect.
func (w *BareMetalWorkers) checkProfile(ctx context.Context, serverID, profileID int, rescue bool) error {
	ps, err := w.Tenantos.Profiles(ctx, serverID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ps, func(p tenantos.Profile) bool { return p.ID == profileID })
	switch {
	case i < 0 || (w.WipeProfile > 0 && profileID == w.WipeProfile):
		return permanent("install", fmt.Sprintf("server %d offers no profile %d", serverID, profileID))
	case ps[i].Rescue != rescue && rescue:
		return permanent("install", fmt.Sprintf("profile %d (%s) is not a rescue system", profileID, ps[i].Name))
	case ps[i].Rescue != rescue:
		return permanent("install", fmt.Sprintf("profile %d (%s) is a rescue system, not an installation", profileID, ps[i].Name))
	}
	return nil
}

// installSig identifies an install at Tenantos: its profile, when its
// first phase began (Tenantos says it to the second) and how it stands.
// The install a step asked for differs from the one Tenantos showed before
// in one of them: a new install runs, or ended otherwise, or began later.
type installSig struct {
	ProfileID int       `json:"profileId"`
	Started   time.Time `json:"started"`
	Step      int       `json:"step"`
	State     string    `json:"state"`
}

func sigOf(st tenantos.InstallStatus) installSig {
	state := "none"
	switch {
	case st.Running:
		state = "running"
	case st.Completed:
		state = "completed"
	case st.Failed:
		state = "failed"
	case st.Cancelled:
		state = "cancelled"
	}
	return installSig{ProfileID: st.ProfileID, Started: st.Started().UTC(), Step: st.Step, State: state}
}

// startInstall starts a reinstallation once per step. Before asking, it
// remembers which install Tenantos showed last: a later attempt that finds
// another one (of the profile asked for) knows its request took, and
// adopts that install and no other; one that finds the same knows it did
// not, and asks again.
func (w *BareMetalWorkers) startInstall(ctx context.Context, run *Run, svc *queries.Service, in BareMetalInstall, password string, rescue bool) error {
	srv, err := w.ownServer(ctx, svc)
	if err != nil {
		return err
	}
	st, err := w.Tenantos.InstallStatus(ctx, srv.ID)
	if err != nil {
		return err
	}
	var before installSig
	asked, err := run.Recall("before", &before)
	if err != nil {
		return err
	}
	if asked && sigOf(st) != before && st.ProfileID == in.ProfileID {
		run.log.Info("adopting the installation this step started", "server", srv.ID, "profile", in.ProfileID)
		return run.Set(ctx, "installBefore", before)
	}
	if st.Running {
		return &failure.Error{Class: failure.Transient, Provider: tenantos.Provider, Op: "install", RetryAfter: time.Minute,
			Message: fmt.Sprintf("another installation (profile %d) is running on server %d", st.ProfileID, srv.ID)}
	}
	if err := w.checkProfile(ctx, srv.ID, in.ProfileID, rescue); err != nil {
		return err
	}
	if !asked {
		before = sigOf(st)
		if err := run.Remember(ctx, "before", before); err != nil {
			return err
		}
	}
	if err := w.Tenantos.StartReinstallation(ctx, srv.ID, tenantos.Reinstallation{
		ProfileID: in.ProfileID, DiskLayoutID: in.DiskLayoutID, UserProvidedDiskLayout: in.UserProvidedDiskLayout,
		RootPassword: password, Hostname: in.Hostname, SSHKeys: in.SSHKeys, RunScripts: in.RunScripts,
		ConfigureAllIPv4: in.ConfigureAllIPv4, ConfigureAllIPv6: in.ConfigureAllIPv6, InstallPowerAction: in.InstallPowerAction,
	}); err != nil {
		return err
	}
	// The install that follows is the first Tenantos shows after this one.
	return run.Set(ctx, "installBefore", before)
}

// followInstall waits until the install of profile this job started ends,
// recording each phase Tenantos reports in the job's log (once, across
// attempts). It succeeds only on an install Tenantos reports completed, on
// a server still the service's. A failed install fails the job in
// Tenantos' words; one stopped at Tenantos, replaced by another, or no
// longer shown at all (Tenantos lost it) fails it too. An OS install that
// does not finish leaves the service needing repair (a reinstall).
func (w *BareMetalWorkers) followInstall(ctx context.Context, run *Run, svc *queries.Service, profile int, osInstall bool) (tenantos.InstallStatus, error) {
	ref, err := TenantosRef(svc)
	if err != nil {
		return tenantos.InstallStatus{}, err
	}
	var logged int
	if _, err := run.Recall("logged", &logged); err != nil {
		return tenantos.InstallStatus{}, err
	}
	var before installSig
	if _, err := run.Get("installBefore", &before); err != nil {
		return tenantos.InstallStatus{}, err
	}
	var st tenantos.InstallStatus
	err = poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		if st, err = w.Tenantos.InstallStatus(ctx, ref.ServerID); err != nil {
			return false, err
		}
		switch {
		case st.Running && st.ProfileID != profile:
			return false, installEnded("install", fmt.Sprintf("Tenantos shows an installation of profile %d, not %d: another installation replaced this one", st.ProfileID, profile), osInstall)
		case st.ProfileID != profile || sigOf(st) == before:
			return false, installEnded("install", fmt.Sprintf("Tenantos no longer shows the installation of profile %d this job started on server %d", profile, ref.ServerID), osInstall)
		}
		if n := len(st.Steps); n > logged {
			for _, s := range st.Steps[logged:] {
				if err := run.Log(ctx, fmt.Sprintf("step %d: %s", s.Step, s.Description)); err != nil {
					return false, err
				}
			}
			logged = n
			if err := run.Remember(ctx, "logged", logged); err != nil {
				return false, err
			}
		}
		return !st.Running, nil
	})
	if err != nil {
		return st, err
	}
	switch {
	case st.Failed:
		msg := cmp.Or(st.ErrorMessage, "the installation failed")
		return st, installEnded("install", fmt.Sprintf("Tenantos: %s (at step %d: %s)", msg, st.Step, stepName(st)), osInstall)
	case st.Cancelled:
		return st, installEnded("install", fmt.Sprintf("the installation was stopped at Tenantos at step %d (%s)", st.Step, stepName(st)), osInstall)
	case !st.Completed:
		return st, installEnded("install", fmt.Sprintf("Tenantos reports the installation of profile %d ended without completing it", profile), osInstall)
	}
	if _, err := w.ownServer(ctx, svc); err != nil {
		return st, err
	}
	return st, nil
}

func installEnded(op, msg string, osInstall bool) error {
	if !osInstall {
		return permanent(op, msg)
	}
	return &failure.Error{Class: failure.Permanent, Provider: tenantos.Provider, Op: op,
		Message: msg + "; the server may have no working system: reinstall it", Err: ErrNeedsRepair}
}

// stepName is the description of the install's last phase reached.
func stepName(st tenantos.InstallStatus) string {
	if len(st.Steps) == 0 {
		return "not started"
	}
	return st.Steps[len(st.Steps)-1].Description
}

// waitUp waits until an installed server is powered on, unless the
// install was asked not to restart it.
func (w *BareMetalWorkers) waitUp(ctx context.Context, svc *queries.Service, in BareMetalInstall) error {
	if in.InstallPowerAction == "noRestart" {
		return nil
	}
	ref, err := TenantosRef(svc)
	if err != nil {
		return err
	}
	return poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		srv, err := w.Tenantos.Server(ctx, ref.ServerID)
		return srv.Power == "online" && !srv.ReinstallationRunning, err
	})
}

// provisionStopped handles a provision that stopped: one cancelled between
// steps, or refused for good before any install began (Tenantos turned the
// install's settings down), gives its server back to the pool (stopping
// its install) and says so; anything else is returned as it is.
func (w *BareMetalWorkers) provisionStopped(ctx context.Context, job *Job[BareMetalProvisionArgs], err error) error {
	refused := failure.IsPermanent(err) && !errors.Is(err, ErrNeedsRepair) && !slices.Contains(job.cp.Done, "install")
	if !(errors.Is(err, ErrCancelled) || refused) || ctx.Err() != nil {
		return err
	}
	stop := func(cond string) error {
		if refused {
			return &failure.Error{Class: failure.Permanent, Provider: tenantos.Provider, Op: "provision",
				Message: failure.UserMessage(err) + "; " + cond, Err: err}
		}
		return &StoppedError{Err: err, Condition: cond}
	}
	ref, rerr := TenantosRef(job.Service)
	if rerr != nil {
		return stop("no server was taken")
	}
	unclaim := func() error {
		err := w.Queries.SetServiceProviderRef(ctx, queries.SetServiceProviderRefParams{ID: job.Service.ID, ProviderRef: []byte("{}")})
		if err == nil {
			job.Service.ProviderRef = []byte("{}")
		}
		return err
	}
	srv, serr := w.ownServer(ctx, job.Service)
	if errors.Is(serr, ErrNeedsRepair) {
		// Claimed but not marked yet: nothing at Tenantos is ours.
		if cerr := unclaim(); cerr != nil {
			return stop(fmt.Sprintf("server %d was claimed and is not marked; releasing the claim failed: %v", ref.ServerID, cerr))
		}
		return stop(fmt.Sprintf("server %d was not changed and is free again", ref.ServerID))
	}
	if serr != nil {
		return stop(fmt.Sprintf("server %d could not be read (%s); cancel the service to give it back", ref.ServerID, failure.UserMessage(serr)))
	}
	cond, rerr := w.release(ctx, job.Service, srv, nil)
	if rerr != nil {
		return stop(fmt.Sprintf("server %d: %s; giving it back failed: %s", ref.ServerID, cond, failure.UserMessage(rerr)))
	}
	if cerr := unclaim(); cerr != nil {
		return stop(fmt.Sprintf("server %d was given back to the pool, but the claim stays recorded: %v", ref.ServerID, cerr))
	}
	return stop(fmt.Sprintf("server %d was given back to the pool (%s)", ref.ServerID, cond))
}

// release stops whatever the server runs for the service, powers it off,
// removes the addresses assigned for the service and gives the server back
// to the pool without the service's mark; with wipe (the step's run) it
// runs the wipe profile first when one is configured. It returns what it
// did. The mark goes last, so that an interrupted release still finds the
// server its own.
func (w *BareMetalWorkers) release(ctx context.Context, svc *queries.Service, srv tenantos.Server, wipe *Run) (string, error) {
	var did []string
	st, err := w.Tenantos.InstallStatus(ctx, srv.ID)
	if err != nil {
		return "", err
	}
	// A wipe this step asked for (running or ended) is followed, not
	// stopped or asked for again; see startInstall.
	var before installSig
	asked := false
	if wipe != nil && w.WipeProfile > 0 {
		if asked, err = wipe.Recall("wipe", &before); err != nil {
			return "", err
		}
	}
	ownWipe := asked && sigOf(st) != before && st.ProfileID == w.WipeProfile
	if (st.Running && !ownWipe) || srv.RescueBootRunning {
		if err := w.Tenantos.StopReinstallation(ctx, srv.ID, true); err != nil {
			return "", err
		}
		did = append(did, fmt.Sprintf("its installation stopped at step %d (%s)", st.Step, stepName(st)))
	}
	// The server goes back to the pool's owner before anything else, so
	// that the customer never holds it unsuspended, nor meets the wipe;
	// the suspension is lifted in the same write (Tenantos refuses a
	// suspended server's installs, the wipe too).
	ref, _ := TenantosRef(svc)
	owner := cmp.Or(w.PoolUser, ref.PoolOwner)
	if u := (tenantos.ServerUpdate{}); (owner > 0 && srv.UserID != owner) || srv.Suspended {
		if owner > 0 && srv.UserID != owner {
			u.UserID = &owner
		}
		if srv.Suspended {
			none := []int{}
			u.SuspendUserIDs, u.SuspendPowerAction = &none, "none"
		}
		if _, err := w.Tenantos.UpdateServer(ctx, srv.ID, u); err != nil {
			return strings.Join(did, ", "), err
		}
	}
	if wipe != nil && w.WipeProfile > 0 {
		if err := w.wipe(ctx, wipe, srv.ID, ownWipe); err != nil {
			return strings.Join(did, ", "), err
		}
		did = append(did, "its disks wiped")
	}
	if err := w.powerTo(ctx, srv.ID, tenantos.PowerOff, "offline"); err != nil {
		return strings.Join(did, ", "), err
	}
	did = append(did, "powered off")
	ips, err := w.Tenantos.IPAssignments(ctx, srv.ID)
	if err != nil {
		return strings.Join(did, ", "), err
	}
	removed := 0
	for _, a := range ips {
		if a.Description != ipDescription(svc.ID) {
			continue
		}
		if err := w.Tenantos.DeleteIPAssignment(ctx, srv.ID, a.ID); err != nil && !errors.Is(err, tenantos.ErrNotFound) {
			return strings.Join(did, ", "), err
		}
		removed++
	}
	if removed > 0 {
		did = append(did, fmt.Sprintf("%d address(es) removed", removed))
	}
	tags := w.pool()
	for _, t := range srv.Tags {
		if !strings.HasPrefix(t, markPrefix) && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	if _, err := w.Tenantos.UpdateServer(ctx, srv.ID, tenantos.ServerUpdate{Tags: &tags}); err != nil {
		return strings.Join(did, ", "), err
	}
	return strings.Join(append(did, "back in the pool"), ", "), nil
}

// wipe runs the wipe profile on the server, unless this step asked for it
// already (own), and waits for it to end. What Tenantos showed before the
// request is remembered first, as startInstall does, so that a retry after
// a lost answer adopts the wipe rather than asking twice.
func (w *BareMetalWorkers) wipe(ctx context.Context, run *Run, id int, own bool) error {
	if !own {
		st, err := w.Tenantos.InstallStatus(ctx, id)
		if err != nil {
			return err
		}
		if err := run.Remember(ctx, "wipe", sigOf(st)); err != nil {
			return err
		}
		if err := w.Tenantos.StartReinstallation(ctx, id, tenantos.Reinstallation{ProfileID: w.WipeProfile}); err != nil {
			return err
		}
	}
	return poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		st, err := w.Tenantos.InstallStatus(ctx, id)
		if err != nil {
			return false, err
		}
		if st.ProfileID != w.WipeProfile {
			return false, permanent("wipe", fmt.Sprintf("Tenantos shows an installation of profile %d on server %d, not the wipe", st.ProfileID, id))
		}
		if st.Failed || st.Cancelled {
			return false, permanent("wipe", fmt.Sprintf("the disk wipe of server %d did not finish: %s", id, cmp.Or(st.ErrorMessage, stepName(st))))
		}
		return !st.Running, nil
	})
}

// powerTo asks for a power method, unless the server is in the state it
// leads to already, and waits for the state.
func (w *BareMetalWorkers) powerTo(ctx context.Context, id int, method, want string) error {
	now, err := w.Tenantos.PowerStatus(ctx, id)
	if err != nil {
		return err
	}
	if now != want {
		if err := w.Tenantos.Power(ctx, id, method); err != nil {
			return err
		}
	}
	return poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
		now, err := w.Tenantos.PowerStatus(ctx, id)
		return now == want, err
	})
}

// Reinstall implements Worker for BareMetalReinstallArgs. A reinstall of a
// service needing repair repairs it when the install ends. A cancellation
// during the install stops it at Tenantos; the service then needs repair.
func (w *BareMetalWorkers) Reinstall(ctx context.Context, job *Job[BareMetalReinstallArgs]) error {
	svc := job.Service
	if svc == nil || svc.Provider != tenantos.Provider {
		return permanent(job.Args.Kind(), "reinstall needs a Tenantos service")
	}
	var secrets InstallSecrets
	if _, err := job.OpenSecrets(&secrets); err != nil {
		return err
	}
	in := job.Args.Install
	err := job.Steps(ctx,
		Step{"install", func(ctx context.Context) error { return w.startInstall(ctx, job.Run, svc, in, secrets.Password, false) }},
		Step{"wait", func(ctx context.Context) error {
			_, err := w.followInstall(ctx, job.Run, svc, in.ProfileID, true)
			return err
		}},
		Step{"up", func(ctx context.Context) error { return w.waitUp(ctx, svc, in) }},
	)
	if err != nil {
		return w.installStopped(ctx, job.Run, svc, err, in.ProfileID, true)
	}
	ref, _ := TenantosRef(svc)
	if svc.Status == "needs_repair" {
		if err := w.Queries.SetServiceRepaired(ctx, queries.SetServiceRepairedParams{ID: svc.ID, ProviderRef: svc.ProviderRef}); err != nil {
			return fmt.Errorf("record the repair: %w", err)
		}
	} else if in.InstallPowerAction != "noRestart" {
		if err := w.Queries.SetServicePowerState(ctx, queries.SetServicePowerStateParams{ID: svc.ID, PowerState: "running"}); err != nil {
			return fmt.Errorf("record power state: %w", err)
		}
	}
	job.SetResult(BareMetalResult{ServerID: ref.ServerID, ProfileID: in.ProfileID})
	return nil
}

// installStopped handles an install job that stopped: one cancelled
// between steps stops the install it started at Tenantos and records where
// that left the server (an OS install stopped halfway leaves the service
// needing repair); anything else is returned as it is.
func (w *BareMetalWorkers) installStopped(ctx context.Context, run *Run, svc *queries.Service, err error, profile int, osInstall bool) error {
	if !errors.Is(err, ErrCancelled) || ctx.Err() != nil {
		if osInstall && err != nil && slices.Contains(run.cp.Done, "install") && !errors.Is(err, ErrCancelled) {
			// Should this be its last attempt, an install it started and
			// did not see end well leaves the service to repair.
			return fmt.Errorf("%w (%w)", err, ErrNeedsRepair)
		}
		return err
	}
	// What Tenantos showed before the install: known job-wide once the
	// install step asked, and to the install step itself from its memory.
	var before installSig
	started, _ := run.Get("installBefore", &before)
	if !started && run.Step() == "install" {
		started, _ = run.Recall("before", &before)
	}
	if !started {
		return &StoppedError{Err: err, Condition: "the server was not changed"}
	}
	srv, serr := w.ownServer(ctx, svc)
	if serr != nil {
		return &StoppedError{Err: err, Condition: "its server was not touched: " + failure.UserMessage(serr)}
	}
	st, serr := w.Tenantos.InstallStatus(ctx, srv.ID)
	if serr != nil {
		return &StoppedError{Err: err, Condition: fmt.Sprintf("server %d: its installation's state could not be read (%s)", srv.ID, failure.UserMessage(serr))}
	}
	needsRepair := func(cond string) error {
		if !osInstall {
			return &StoppedError{Err: err, Condition: cond}
		}
		reason := cond + "; it may have no working system: reinstall it"
		if merr := w.Queries.MarkServiceNeedsRepair(ctx, queries.MarkServiceNeedsRepairParams{ID: svc.ID, RepairReason: reason}); merr != nil {
			return &StoppedError{Err: err, Condition: cond + "; marking the service needs_repair failed: " + merr.Error()}
		}
		return &StoppedError{Err: err, Condition: reason}
	}
	switch ours := st.ProfileID == profile && sigOf(st) != before; {
	case !ours && st.Running:
		// Not the install this job asked for: someone else's, left alone.
		return &StoppedError{Err: err, Condition: fmt.Sprintf("server %d: the installation running (profile %d) is not this job's and was left alone", srv.ID, st.ProfileID)}
	case !ours:
		return &StoppedError{Err: err, Condition: fmt.Sprintf("server %d: Tenantos shows no installation of this job; nothing was stopped", srv.ID)}
	case st.Completed:
		return &StoppedError{Err: err, Condition: fmt.Sprintf("server %d: the installation had finished", srv.ID)}
	case !st.Running:
		return needsRepair(fmt.Sprintf("server %d: the installation had ended without completing at step %d (%s)", srv.ID, st.Step, stepName(st)))
	}
	if err := w.Tenantos.StopReinstallation(ctx, srv.ID, false); err != nil {
		return &StoppedError{Err: err, Condition: fmt.Sprintf("server %d: stopping its installation failed (%s); it goes on", srv.ID, failure.UserMessage(err))}
	}
	return needsRepair(fmt.Sprintf("server %d: the installation was stopped at step %d (%s) and the server restarted", srv.ID, st.Step, stepName(st)))
}

// Rescue implements Worker for BareMetalRescueArgs. Enabling boots the
// rescue profile with a generated root password (shown once with the
// finished job); disabling leaves the rescue system (Tenantos restarts the
// server into its installed system).
func (w *BareMetalWorkers) Rescue(ctx context.Context, job *Job[BareMetalRescueArgs]) error {
	svc := job.Service
	if svc == nil || svc.Provider != tenantos.Provider {
		return permanent(job.Args.Kind(), "rescue needs a Tenantos service")
	}
	if job.Args.Message != "" {
		job.Log.Info("rescue asked", "message", job.Args.Message)
	}
	if !job.Args.Enable {
		err := job.Steps(ctx,
			Step{"leave", func(ctx context.Context) error {
				srv, err := w.ownServer(ctx, svc)
				if err != nil || !srv.RescueBootRunning {
					return err // not in rescue: nothing to leave
				}
				// Set first: a retry after the call waits for the server
				// even if it no longer sees the rescue system.
				if err := job.Set(ctx, "left", true); err != nil {
					return err
				}
				return w.Tenantos.StopReinstallation(ctx, srv.ID, false)
			}},
			Step{"up", func(ctx context.Context) error {
				var left bool
				if _, err := job.Get("left", &left); err != nil || !left {
					return err
				}
				ref, _ := TenantosRef(svc)
				return poll(ctx, w.pollInterval(), func(ctx context.Context) (bool, error) {
					srv, err := w.Tenantos.Server(ctx, ref.ServerID)
					return !srv.RescueBootRunning && srv.Power == "online", err
				})
			}},
		)
		if err != nil {
			return err
		}
		job.SetResult(RescueResult{Rescue: false})
		return nil
	}
	var secrets RescueSecrets
	in := BareMetalInstall{ProfileID: job.Args.ProfileID}
	err := job.Steps(ctx,
		Step{"password", func(ctx context.Context) error {
			if ok, err := job.GetSecret("password", &secrets); err != nil || ok {
				return err
			}
			secrets.Password = rand.Text()[:20]
			return job.SetSecret(ctx, "password", secrets)
		}},
		Step{"install", func(ctx context.Context) error {
			if _, err := job.GetSecret("password", &secrets); err != nil {
				return err
			}
			return w.startInstall(ctx, job.Run, svc, in, secrets.Password, true)
		}},
		Step{"boot", func(ctx context.Context) error {
			if _, err := w.followInstall(ctx, job.Run, svc, in.ProfileID, false); err != nil {
				return err
			}
			return w.waitUp(ctx, svc, in)
		}},
	)
	if err != nil {
		return w.installStopped(ctx, job.Run, svc, err, in.ProfileID, false)
	}
	if _, err := job.GetSecret("password", &secrets); err != nil {
		return err
	}
	job.SetResult(RescueResult{Rescue: true})
	job.SetSecretResult(secrets)
	return nil
}
