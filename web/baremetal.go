package web

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// bareMetalService loads the {id} service, which must be a Tenantos one
// this process can reach.
func (s *Server) bareMetalService(r *http.Request) (queries.Service, error) {
	svc, err := s.teamService(r)
	if err != nil {
		return svc, err
	}
	if svc.Provider != jobs.ProviderTenantos {
		return svc, s.wrongProvider(jobs.ProviderTenantos, svc.Provider)
	}
	if s.BareMetal == nil {
		return svc, providerMissing(jobs.ProviderTenantos)
	}
	return svc, nil
}

// liveBareMetal loads the {id} service for a live read of its server: one
// that has no server yet, or whose reference may name another's server now
// (needs_repair), is not read.
func (s *Server) liveBareMetal(r *http.Request) (queries.Service, error) {
	svc, err := s.bareMetalService(r)
	if err != nil {
		return svc, err
	}
	if svc.Status == "needs_repair" || svc.Status == "terminated" {
		return svc, usable(svc)
	}
	if _, err := jobs.TenantosRef(&svc); err != nil || svc.Status == "pending" {
		return svc, &apiError{Status: http.StatusConflict, ErrorKey: "service_pending", Message: "Service is not provisioned yet"}
	}
	return svc, nil
}

// bareMetalServiceRequest orders a dedicated server: one taken from the
// pool (or the one plan.serverId names) and installed.
type bareMetalServiceRequest struct {
	serviceOrder
	Plan *jobs.BareMetalPlan `json:"plan"`
	bareMetalInstallRequest
}

// bareMetalInstallRequest is what a server is installed with. The names
// are our API's (camelCase); Tenantos' own are in the OpenAPI description.
type bareMetalInstallRequest struct {
	ProfileID              int      `json:"profileId"`
	DiskLayoutID           int      `json:"diskLayoutId"`
	UserProvidedDiskLayout string   `json:"userProvidedDiskLayout"`
	RootPassword           string   `json:"rootPassword"`
	SSHKeys                []string `json:"sshKeys"`
	Hostname               string   `json:"hostname"`
	RunScripts             []int    `json:"runScripts"`
	ConfigureAllIPv4       *bool    `json:"configureAllIpv4"`
	ConfigureAllIPv6       *bool    `json:"configureAllIpv6"`
	InstallPowerAction     string   `json:"installPowerAction"`
}

// installPowerActions are Tenantos' installPowerAction values.
var installPowerActions = []string{"restartAndPxeBoot", "restartOnly", "noRestart"}

func (req bareMetalInstallRequest) validate() []string {
	var errs []string
	if req.ProfileID <= 0 {
		errs = append(errs, "profileId is required (GET /api/services/{id}/bare-metal/profiles lists them)")
	}
	if req.DiskLayoutID < 0 {
		errs = append(errs, "diskLayoutId must be a disk layout's id")
	}
	if len(req.UserProvidedDiskLayout) > 65535 {
		errs = append(errs, "userProvidedDiskLayout must be at most 65535 characters")
	}
	if msg := validatePassword(req.RootPassword); msg != "" {
		errs = append(errs, "rootP"+strings.TrimPrefix(msg, "p")) // "rootPassword must be …"
	}
	if req.Hostname != "" && (len(req.Hostname) > 253 || !hostnameRE.MatchString(req.Hostname)) {
		errs = append(errs, "hostname must be a valid host name such as web1.example.com")
	}
	errs = append(errs, validateSSHKeys(req.SSHKeys)...)
	if len(req.RunScripts) > 50 {
		errs = append(errs, "runScripts may name at most 50 scripts")
	}
	if req.InstallPowerAction != "" && !slices.Contains(installPowerActions, req.InstallPowerAction) {
		errs = append(errs, oneOf("installPowerAction", installPowerActions))
	}
	return errs
}

// install splits the request into job arguments and the secrets to seal.
func (req bareMetalInstallRequest) install() (jobs.BareMetalInstall, any) {
	in := jobs.BareMetalInstall{ProfileID: req.ProfileID, DiskLayoutID: req.DiskLayoutID, UserProvidedDiskLayout: req.UserProvidedDiskLayout,
		Hostname: req.Hostname, SSHKeys: req.SSHKeys, RunScripts: req.RunScripts, ConfigureAllIPv4: req.ConfigureAllIPv4,
		ConfigureAllIPv6: req.ConfigureAllIPv6, InstallPowerAction: req.InstallPowerAction}
	if req.RootPassword == "" {
		return in, nil
	}
	return in, jobs.InstallSecrets{Password: req.RootPassword}
}

func validateBareMetalPlan(p jobs.BareMetalPlan) []string {
	var errs []string
	if p.ServerID < 0 || p.User < 0 {
		errs = append(errs, "plan.serverId and plan.user cannot be negative")
	}
	if len(p.Tags) > 20 {
		errs = append(errs, "plan.tags may hold at most 20 tags")
	}
	for _, t := range p.Tags {
		if t == "" || len(t) > 100 || !utf8.ValidString(t) {
			errs = append(errs, "plan.tags must be tags of 1 to 100 characters")
			break
		}
	}
	if len(p.IPs) > 64 {
		errs = append(errs, "plan.ips may hold at most 64 addresses")
	}
	for i, ip := range p.IPs {
		addr, err := netip.ParseAddr(ip.IP)
		bits := 32
		if err == nil && addr.Is6() {
			bits = 128
		}
		if err != nil || addr.Zone() != "" || addr.Is4In6() || ip.CIDR < 0 || ip.CIDR > bits {
			errs = append(errs, fmt.Sprintf("plan.ips[%d] must be an IP address with a prefix length (cidr) that fits it", i))
		}
		if ip.Gateway != "" {
			if _, err := netip.ParseAddr(ip.Gateway); err != nil {
				errs = append(errs, fmt.Sprintf("plan.ips[%d].gateway must be an IP address", i))
			}
		}
	}
	return errs
}

// createBareMetalService creates a pending bare-metal service and its
// provision job. The install is checked against the profiles of the server
// the plan names, or of a free one of its pool.
func (s *Server) createBareMetalService(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req bareMetalServiceRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	team, errs := s.newServiceTeam(r, req.TeamID)
	end, oerrs := req.serviceOrder.validate()
	errs = append(errs, oerrs...)
	if req.Plan == nil {
		errs = append(errs, "plan is required")
	} else {
		errs = append(errs, validateBareMetalPlan(*req.Plan)...)
	}
	errs = append(errs, req.bareMetalInstallRequest.validate()...)
	if len(errs) > 0 {
		return invalid(errs...)
	}
	if s.BareMetal == nil {
		return providerMissing(jobs.ProviderTenantos)
	}
	in, secrets := req.bareMetalInstallRequest.install()
	if errs, err := s.BareMetal.CheckOrder(r.Context(), *req.Plan, in, req.RootPassword != ""); err != nil {
		return providerError(err)
	} else if len(errs) > 0 {
		return invalid(errs...)
	}
	plan, _ := json.Marshal(req.Plan)
	return s.createWithJob(w, r, queries.CreateServiceParams{
		TeamID: team, Name: req.Name, Provider: jobs.ProviderTenantos, Location: req.Location,
		ProviderRef: []byte("{}"), Plan: plan, Status: "pending", BillingPeriodEnd: end,
	}, func(id uuid.UUID) jobs.Args { return jobs.BareMetalProvisionArgs{ServiceID: id, Install: in} }, secrets)
}

// getBareMetal answers the service with its live server when it has one.
func (s *Server) getBareMetal(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.bareMetalService(r)
	if err != nil {
		return err
	}
	var server *jobs.BareMetalServer
	// A server is read once the service holds it for good: not while a
	// provision takes it, nor once it is gone or may be another's.
	if _, rerr := jobs.TenantosRef(&svc); rerr == nil && (svc.Status == "active" || svc.Status == "suspended") {
		srv, err := s.BareMetal.Server(r.Context(), &svc, s.logger(r))
		if err != nil {
			return liveReadError(&svc, err)
		}
		server = &srv
	}
	ok(w, http.StatusOK, "service", toServiceJSON(svc), "server", server)
	return nil
}

// bareMetalProfiles lists the profiles the server may be installed or
// rescued with, with their disk layouts and scripts.
func (s *Server) bareMetalProfiles(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.liveBareMetal(r)
	if err != nil {
		return err
	}
	ps, err := s.BareMetal.Profiles(r.Context(), &svc, s.logger(r))
	if err != nil {
		return liveReadError(&svc, err)
	}
	ok(w, http.StatusOK, "profiles", ps)
	return nil
}

// reinstallBareMetal installs the server afresh (its disks' contents are
// lost). It is also the repair of a service whose install did not end.
func (s *Server) reinstallBareMetal(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.bareMetalService(r)
	if err != nil {
		return err
	}
	if svc.Status != "needs_repair" {
		if aerr := usable(svc); aerr != nil {
			return aerr
		}
	}
	if _, err := jobs.TenantosRef(&svc); err != nil {
		return &apiError{Status: http.StatusConflict, ErrorKey: "service_pending", Message: "Service has no server yet"}
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req bareMetalInstallRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if errs := req.validate(); len(errs) > 0 {
		return invalid(errs...)
	}
	in, secrets := req.install()
	// A service needing repair may point at a server no longer its own:
	// the job checks the mark before it asks for anything.
	if svc.Status != "needs_repair" {
		errs, err := s.BareMetal.CheckInstall(r.Context(), &svc, in, req.RootPassword != "", false, s.logger(r))
		if err != nil {
			return liveReadError(&svc, err)
		}
		if len(errs) > 0 {
			return invalid(errs...)
		}
	}
	job, replayed, err := s.recordJob(r, svc.ID, jobs.BareMetalReinstallArgs{ServiceID: svc.ID, Install: in}, secrets)
	if err != nil {
		return err
	}
	answerJob(w, s.logger(r), job, replayed)
	return nil
}

// bareMetalRescueRequest boots a rescue profile; the password is ours.
type bareMetalRescueRequest struct {
	ProfileID int    `json:"profileId"`
	Message   string `json:"message"`
}

// rescueBareMetal boots the server's rescue system (POST), with a root
// password generated for it and shown once with the finished job, or
// leaves it (DELETE).
func (s *Server) rescueBareMetal(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.liveBareMetal(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodDelete {
		return s.insertJob(w, r, svc.ID, jobs.BareMetalRescueArgs{ServiceID: svc.ID})
	}
	var req bareMetalRescueRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	var errs []string
	if len(req.Message) > 1000 || !utf8.ValidString(req.Message) {
		errs = append(errs, "message must be at most 1000 characters")
	}
	if req.ProfileID == 0 {
		// Without one, the server's first rescue profile.
		ps, err := s.BareMetal.Profiles(r.Context(), &svc, s.logger(r))
		if err != nil {
			return liveReadError(&svc, err)
		}
		if i := slices.IndexFunc(ps, func(p jobs.BareMetalProfile) bool { return p.Rescue }); i >= 0 {
			req.ProfileID = ps[i].ID
		}
	}
	if len(errs) == 0 {
		perrs, err := s.BareMetal.CheckInstall(r.Context(), &svc, jobs.BareMetalInstall{ProfileID: req.ProfileID}, false, true, s.logger(r))
		if err != nil {
			return liveReadError(&svc, err)
		}
		errs = perrs
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	return s.insertJob(w, r, svc.ID, jobs.BareMetalRescueArgs{ServiceID: svc.ID, Enable: true, ProfileID: req.ProfileID, Message: req.Message})
}

// bareMetalPower carries out a power action in Tenantos' words (on, off,
// reset, cycle) through the service's power job.
func (s *Server) bareMetalPower(w http.ResponseWriter, r *http.Request) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return notFound("Service")
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req actionRequest
	actions := slices.Sorted(maps.Keys(jobs.BareMetalPowerActions))
	if aerr = decodeJSON(body, &req); aerr == nil && jobs.BareMetalPowerActions[req.Action] == "" {
		aerr = invalid(oneOf("action", actions))
	}
	if aerr != nil {
		if _, err := s.serviceFor(r, "view"); err != nil {
			return err // a service the caller may not see is 404 whatever the body
		}
		return aerr
	}
	action := jobs.BareMetalPowerActions[req.Action]
	svc, err := s.serviceFor(r, actionPermission(action))
	if err != nil {
		return err
	}
	if svc.Provider != jobs.ProviderTenantos {
		return s.wrongProvider(jobs.ProviderTenantos, svc.Provider)
	}
	return s.powerAction(w, r, id, action)
}

// bareMetalConsole starts a NoVNC session on the server's BMC, which
// Tenantos lets only the caller's address open (see the README: the
// session is bound to the client, not relayed).
func (s *Server) bareMetalConsole(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.liveBareMetal(r)
	if err != nil {
		return err
	}
	var req struct {
		ConsoleMode string `json:"consoleMode"`
	}
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	modes := []string{"standard", "web"}
	if req.ConsoleMode != "" && !slices.Contains(modes, req.ConsoleMode) {
		return invalid(oneOf("consoleMode", modes))
	}
	ip := s.clientIP(r)
	if !ip.IsValid() {
		return &apiError{Status: http.StatusBadRequest, Message: "The client's address is unknown; a console session is bound to it"}
	}
	c, err := s.BareMetal.Console(r.Context(), &svc, ip.String(), req.ConsoleMode, s.logger(r))
	if err != nil {
		return liveReadError(&svc, err)
	}
	ok(w, http.StatusOK, "console", c)
	return nil
}

// bareMetalStatsRequest asks for statistics of one category.
type bareMetalStatsRequest struct {
	Category string `json:"category"`
	Mode     string `json:"mode"`
	Payload  struct {
		Predefined string `json:"predefined"`
		From       string `json:"from"`
		To         string `json:"to"`
	} `json:"payload"`
}

// statsRanges are Tenantos' predefined statistics ranges.
var statsRanges = []string{"today", "1h", "24h", "14days", "30days", "all", "currentWeek", "week", "month", "currentMonth", "year"}

// bareMetalStats reads the server's bandwidth, load or IPMI sensors.
func (s *Server) bareMetalStats(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.liveBareMetal(r)
	if err != nil {
		return err
	}
	var req bareMetalStatsRequest
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	var errs []string
	if !slices.Contains(jobs.BareMetalStatsCategories, req.Category) {
		errs = append(errs, oneOf("category", jobs.BareMetalStatsCategories))
	}
	if req.Mode == "" {
		req.Mode = "graph"
	}
	if req.Mode != "graph" && req.Mode != "text" {
		errs = append(errs, oneOf("mode", []string{"graph", "text"}))
	}
	q := jobs.BareMetalStatsQuery{Predefined: req.Payload.Predefined}
	if q.Predefined != "" && !slices.Contains(statsRanges, q.Predefined) {
		errs = append(errs, oneOf("payload.predefined", statsRanges))
	}
	for _, f := range []struct {
		name string
		raw  string
		dst  *time.Time
	}{{"payload.from", req.Payload.From, &q.From}, {"payload.to", req.Payload.To, &q.To}} {
		if f.raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.raw)
		if err != nil {
			errs = append(errs, f.name+" must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
			continue
		}
		*f.dst = t
	}
	// Tenantos computes a point per interval of the range: the range is
	// bounded on both sides, whichever it names.
	now := time.Now()
	earliest, latest := now.AddDate(0, 0, -400), now.Add(24*time.Hour)
	for _, t := range []time.Time{q.From, q.To} {
		if !t.IsZero() && (t.Before(earliest) || t.After(latest)) {
			errs = append(errs, "payload.from and payload.to must lie within the last 400 days")
			break
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		errs = append(errs, "payload.to must follow payload.from")
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	st, err := s.BareMetal.Stats(r.Context(), &svc, req.Category, req.Mode, q, s.logger(r))
	if err != nil {
		return liveReadError(&svc, err)
	}
	ok(w, http.StatusOK, "stats", st)
	return nil
}

// maxNotes bounds a service's notes (the column's check).
const maxNotes = 10000

// bareMetalNotes reads (GET) or replaces (PATCH) the customer's notes on
// the service.
func (s *Server) bareMetalNotes(w http.ResponseWriter, r *http.Request) error {
	// Notes are ours: they need no Tenantos.
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	if svc.Provider != jobs.ProviderTenantos {
		return s.wrongProvider(jobs.ProviderTenantos, svc.Provider)
	}
	if r.Method == http.MethodGet {
		ok(w, http.StatusOK, "notes", svc.Notes)
		return nil
	}
	var req struct {
		Notes *string `json:"notes"`
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if req.Notes == nil {
		return invalid("notes is required (\"\" clears them)")
	}
	if n := utf8.RuneCountInString(*req.Notes); n > maxNotes || strings.ContainsRune(*req.Notes, 0) {
		return invalid("notes must be at most " + strconv.Itoa(maxNotes) + " characters of text")
	}
	notes, err := s.Queries.SetServiceNotes(r.Context(), queries.SetServiceNotesParams{ID: svc.ID, Notes: *req.Notes})
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "notes", notes)
	return nil
}
