package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// serviceJSON is a service as the API shows it.
type serviceJSON struct {
	ID               uuid.UUID       `json:"id"`
	Name             string          `json:"name"`
	Provider         string          `json:"provider"`
	Location         string          `json:"location"`
	Status           string          `json:"status"`
	PowerState       string          `json:"powerState"`
	Plan             json.RawMessage `json:"plan"`
	ProviderRef      json.RawMessage `json:"providerRef"`
	BillingPeriodEnd *time.Time      `json:"billingPeriodEnd"`
	// RepairReason says why a needs_repair service needs it.
	RepairReason string `json:"repairReason,omitempty"`
	// Drift is what the last verification found differing from the
	// provider, at VerifiedAt (null before the first).
	Drift      json.RawMessage `json:"drift"`
	VerifiedAt *time.Time      `json:"verifiedAt"`
	CreatedAt  time.Time       `json:"createdAt"`
	UpdatedAt  time.Time       `json:"updatedAt"`
}

func toServiceJSON(s queries.Service) serviceJSON {
	return serviceJSON{
		ID: s.ID, Name: s.Name, Provider: s.Provider, Location: s.Location, Status: s.Status,
		PowerState: s.PowerState, Plan: s.Plan, ProviderRef: s.ProviderRef,
		BillingPeriodEnd: s.BillingPeriodEnd, RepairReason: s.RepairReason, Drift: s.Drift, VerifiedAt: s.VerifiedAt,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
}

// pagination reads page and limit as seed 000 defines them.
type pagination struct {
	Page  int   `json:"page"`
	Limit int   `json:"limit"`
	Total int64 `json:"total"`
	Pages int64 `json:"pages"`
}

// maxPage bounds page so that its offset fits PostgreSQL's integer; no list
// is that long.
const maxPage = 1_000_000

func readPagination(r *http.Request) (pagination, []string) {
	p := pagination{Page: 1, Limit: 10}
	var errs []string
	if v := r.URL.Query().Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			errs = append(errs, fmt.Sprintf("page must be a whole number from 1 to %d", maxPage))
		}
		p.Page = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			errs = append(errs, "limit must be a whole number from 1 to 100")
		}
		p.Limit = n
	}
	return p, errs
}

func (p *pagination) setTotal(total int64) {
	p.Total = total
	p.Pages = (total + int64(p.Limit) - 1) / int64(p.Limit)
}

func (p pagination) offset() int32 { return int32((p.Page - 1) * p.Limit) }

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) error {
	p, errs := readPagination(r)
	team, terr, err := callerOf(r).listTeam(r)
	if err != nil {
		return err
	}
	if terr != "" {
		errs = append(errs, terr)
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	total, err := s.Queries.CountTeamServices(r.Context(), team)
	if err != nil {
		return err
	}
	rows, err := s.Queries.ListTeamServices(r.Context(), queries.ListTeamServicesParams{
		TeamID: team, Limit: int32(p.Limit), Offset: p.offset(),
	})
	if err != nil {
		return err
	}
	out := make([]serviceJSON, len(rows))
	for i, row := range rows {
		out[i] = toServiceJSON(row)
	}
	p.setTotal(total)
	ok(w, http.StatusOK, "services", out, "pagination", p)
	return nil
}

// teamService loads the {id} service for the permission the route
// declares (see serviceFor).
func (s *Server) teamService(r *http.Request) (queries.Service, error) {
	return s.serviceFor(r, routePermission(r))
}

// serviceFor loads the {id} service if the caller may do perm with it
// (see Server.decide): a service the caller has no access to is not found,
// so that its existence is not told.
func (s *Server) serviceFor(r *http.Request, perm string) (queries.Service, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return queries.Service{}, notFound("Service")
	}
	svc, err := s.Queries.GetService(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		return queries.Service{}, notFound("Service")
	}
	if err != nil {
		return svc, err
	}
	if !slices.Contains(service.Permissions, perm) {
		return svc, fmt.Errorf("route %s declares no service permission (%q)", r.Pattern, perm)
	}
	return svc, s.decide(r, svc, perm)
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "service", toServiceJSON(svc))
	return nil
}

// Providers whose services can be registered. The others join with their
// adapters.
var supportedProviders = []string{jobs.ProviderProxmox, jobs.ProviderPterodactyl, jobs.ProviderTenantos}

// serviceOrder is what every new service is ordered with, whatever its
// provider.
type serviceOrder struct {
	// TeamID is the team the service is for (see Server.newServiceTeam).
	TeamID           string `json:"teamId"`
	Name             string `json:"name"`
	Provider         string `json:"provider"`
	Location         string `json:"location"`
	BillingPeriodEnd string `json:"billingPeriodEnd"`
}

// validate checks the order's own fields and returns the period end it
// names.
func (o serviceOrder) validate() (*time.Time, []string) {
	var errs []string
	if o.Name == "" || len(o.Name) > 100 {
		errs = append(errs, "name is required and must be at most 100 characters")
	}
	if len(o.Location) > 64 {
		errs = append(errs, "location must be at most 64 characters")
	}
	if o.BillingPeriodEnd == "" {
		return nil, errs
	}
	t, err := time.Parse(time.RFC3339, o.BillingPeriodEnd)
	if err != nil {
		return nil, append(errs, "billingPeriodEnd must be an RFC 3339 time such as 2026-12-31T00:00:00Z")
	}
	return &t, errs
}

// createServiceRequest registers a service the panel has sold.
type createServiceRequest struct {
	serviceOrder
	Plan        *jobs.Plan `json:"plan"`
	ProviderRef *struct {
		Node string `json:"node"`
		VMID int    `json:"vmid"`
	} `json:"providerRef"`
	// Without providerRef, a Proxmox service is provisioned from a template.
	installRequest
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$`)

// validate checks the request and returns the period end it names.
func (req *createServiceRequest) validate() (*time.Time, []string) {
	end, errs := req.serviceOrder.validate()
	if !slices.Contains(supportedProviders, req.Provider) {
		errs = append(errs, oneOf("provider", supportedProviders))
	}
	if req.Plan == nil {
		errs = append(errs, "plan is required")
	} else {
		errs = append(errs, validatePlan(*req.Plan)...)
	}
	if ref := req.ProviderRef; ref != nil {
		if !nodeName.MatchString(ref.Node) {
			errs = append(errs, "providerRef.node must be a Proxmox node name")
		}
		if ref.VMID < 100 || ref.VMID > 999999999 {
			errs = append(errs, "providerRef.vmid must be from 100 to 999999999")
		}
	} else if req.Provider == "proxmox" {
		errs = append(errs, req.installRequest.validate()...)
	}
	return end, errs
}

// newServiceTeam resolves the team a new service is for: teamId, which a
// platform key must name; "" for a key's own team (only platform keys get
// this far). It returns the validation errors instead when it cannot.
func (s *Server) newServiceTeam(r *http.Request, teamID string) (uuid.UUID, []string) {
	if teamID == "" {
		return uuid.Nil, []string{"teamId is required: the team the service is for"}
	}
	id, err := uuid.Parse(teamID)
	if err != nil {
		return uuid.Nil, []string{"teamId must be a team id"}
	}
	if _, err := s.Queries.GetTeam(r.Context(), id); err != nil {
		return uuid.Nil, []string{"teamId names no team"}
	}
	return id, nil
}

// createService registers or provisions a service for a team: a platform
// key's act (see PlatformRequest).
func (s *Server) createService(w http.ResponseWriter, r *http.Request) error {
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var head struct {
		Provider string `json:"provider"`
	}
	if json.Unmarshal(body, &head) == nil {
		switch head.Provider {
		case jobs.ProviderPterodactyl:
			return s.createGameService(w, r, body)
		case jobs.ProviderTenantos:
			return s.createBareMetalService(w, r, body)
		}
	}
	var req createServiceRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if req.ProviderRef == nil && req.OS != "" && req.TemplateID == 0 && s.VPS != nil {
		id, err := s.templateNamed(r, req.OS)
		if err != nil {
			return err
		}
		req.TemplateID = id
	}
	team, errs := s.newServiceTeam(r, req.TeamID)
	end, verrs := req.validate()
	if errs = append(errs, verrs...); len(errs) > 0 {
		return invalid(errs...)
	}
	plan, _ := json.Marshal(req.Plan)
	if req.ProviderRef == nil {
		return s.provision(w, r, team, req, plan, end)
	}
	return s.register(w, r, team, req, plan, end)
}

// register records a service for an existing VM (see
// service.Services.Register).
func (s *Server) register(w http.ResponseWriter, r *http.Request, team uuid.UUID, req createServiceRequest, plan []byte, end *time.Time) error {
	if s.VPS == nil {
		return providerMissing(jobs.ProviderProxmox)
	}
	ref, _ := json.Marshal(req.ProviderRef)
	svc, err := s.Services.Register(r.Context(), queries.CreateServiceParams{
		TeamID: team, Name: req.Name, Provider: req.Provider, Location: req.Location,
		ProviderRef: ref, Plan: plan, BillingPeriodEnd: end,
	})
	if errors.Is(err, jobs.ErrVMUnavailable) {
		// One answer whether the VM is missing or another's: the API tells
		// nobody which nodes or VMIDs exist or whose they are.
		return &apiError{Status: http.StatusConflict, ErrorKey: "vm_unavailable",
			Message: fmt.Sprintf("VM %d on %s cannot be registered: it does not exist, is a template, or belongs to another service", req.ProviderRef.VMID, req.ProviderRef.Node)}
	}
	var se *service.Error
	if err != nil && !errors.As(err, &se) {
		return providerError(err)
	}
	if err != nil {
		return err
	}
	ok(w, http.StatusCreated, "service", toServiceJSON(svc))
	return nil
}

// provision creates a pending VPS service and its provision job.
func (s *Server) provision(w http.ResponseWriter, r *http.Request, team uuid.UUID, req createServiceRequest, plan []byte, end *time.Time) error {
	in, secrets := req.installRequest.install()
	return s.createWithJob(w, r, queries.CreateServiceParams{
		TeamID: team, Name: req.Name, Provider: req.Provider, Location: req.Location,
		ProviderRef: []byte("{}"), Plan: plan, Status: "pending", BillingPeriodEnd: end,
	}, func(id uuid.UUID) jobs.Args { return jobs.ProvisionArgs{ServiceID: id, Install: in} }, secrets)
}

// createWithJob creates a pending service and its provisioning job in one
// transaction (see service.Services.Create) and answers 202 with both. A
// repeated Idempotency-Key answers with the first ones, and nothing new is
// recorded.
func (s *Server) createWithJob(w http.ResponseWriter, r *http.Request, params queries.CreateServiceParams, job func(uuid.UUID) jobs.Args, secrets any) error {
	// A new service's id differs on every try; the request does not.
	req, err := s.jobRequest(r, params.TeamID, job(uuid.Nil), secrets)
	if err != nil {
		return err
	}
	svc, j, replayed, err := s.Services.Create(r.Context(), service.NewService{Params: params, Job: job, Request: req})
	if err != nil {
		return jobError(err)
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	ok(w, http.StatusAccepted, "service", toServiceJSON(svc), "job", toJobJSON(j))
	return nil
}

type actionRequest struct {
	Action string `json:"action"`
}

func (req actionRequest) validate() []string {
	if req.Action == "" {
		return []string{"action is required"}
	}
	if !slices.Contains(jobs.PowerActions, req.Action) {
		return []string{oneOf("action", jobs.PowerActions)}
	}
	return nil
}

// decodeAction reads an action request body.
func decodeAction(body []byte) (actionRequest, *apiError) {
	var req actionRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return req, aerr
	}
	if errs := req.validate(); len(errs) > 0 {
		return req, invalid(errs...)
	}
	return req, nil
}

// serviceAction queues a power action. A team key's request is checked
// by the insert itself (see jobs.Guard): one database round trip when the
// service allows the action; the service is read only to say why not.
func (s *Server) serviceAction(w http.ResponseWriter, r *http.Request) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return notFound("Service")
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	req, aerr := decodeAction(body)
	if aerr != nil {
		if _, err := s.serviceFor(r, "view"); err != nil {
			return err // a service the caller may not see is 404 whatever the body
		}
		return aerr
	}
	return s.powerAction(w, r, id, req.Action)
}

// powerAction queues a valid power action on service id for the caller.
func (s *Server) powerAction(w http.ResponseWriter, r *http.Request, id uuid.UUID, action string) error {
	req := actionRequest{Action: action}
	args := jobs.PowerArgs{ServiceID: id, Action: req.Action}
	perm := actionPermission(req.Action)
	if c := callerOf(r); !c.key.Platform && service.Holds(service.RolePermissions[c.role], perm) {
		// Suspend and resume apply to a suspended service; the others wait
		// until it is resumed.
		statuses := []string{"active"}
		if req.Action == "suspend" || req.Action == "resume" {
			statuses = append(statuses, "suspended")
		}
		job, replayed, err := s.recordGuardedJob(r, c.key.TeamID, id, args, nil, &jobs.Guard{Statuses: statuses, Excluded: s.powerRefusers(req.Action)})
		if !errors.Is(err, jobs.ErrGuarded) {
			if err != nil {
				return err
			}
			answerJob(w, s.logger(r), job, replayed)
			return nil
		}
	}
	svc, err := s.serviceFor(r, perm)
	if err != nil {
		return err
	}
	if aerr := usable(svc); aerr != nil {
		return aerr
	}
	if svc.Status == "suspended" && req.Action != "suspend" && req.Action != "resume" {
		// Its VM or server stays down until the suspension ends (resume).
		return errSuspended
	}
	if slices.Contains(s.powerRefusers(req.Action), svc.Provider) {
		var actions []string
		if p, ok := jobs.Capability[jobs.PowerController](s.Providers, svc.Provider); ok {
			actions = p.PowerActions()
		}
		return invalid(fmt.Sprintf("action %s is not available for %s services; they take: %s", req.Action, s.title(svc.Provider), strings.Join(actions, ", ")))
	}
	return s.insertJob(w, r, svc.ID, args)
}

// powerRefusers are the registered providers that do not carry out the
// power action (a game server has no reset). A provider this process does
// not run is left to its workers.
func (s *Server) powerRefusers(action string) []string {
	out := []string{}
	for _, name := range s.Providers.Names() {
		if p, ok := jobs.Capability[jobs.PowerController](s.Providers, name); !ok || !slices.Contains(p.PowerActions(), action) {
			out = append(out, name)
		}
	}
	return out
}

// usable refuses jobs on a service that has no provider object to act on.
// errSuspended answers what a suspended service may not do until it is
// resumed: run, change or be reached (power, reinstall, resize, restore,
// rescue, console).
var errSuspended = &apiError{Status: http.StatusConflict, ErrorKey: "service_suspended",
	Message: "Service is suspended; this is possible again once it is resumed"}

// unlessSuspended refuses the route on a suspended service (errSuspended).
func (s *Server) unlessSuspended(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		svc, err := s.teamService(r)
		if err != nil {
			return err
		}
		if svc.Status == "suspended" {
			return errSuspended
		}
		return h(w, r)
	}
}

func usable(svc queries.Service) *apiError {
	switch svc.Status {
	case "terminated":
		return &apiError{Status: http.StatusConflict, Message: "Service is terminated", ErrorKey: "service_terminated"}
	case "pending":
		return &apiError{Status: http.StatusConflict, Message: "Service is not provisioned yet", ErrorKey: "service_pending"}
	case "needs_repair":
		return needsRepair(svc)
	}
	return nil
}

// needsRepair answers for a service whose VM is missing, half-made or not
// its own: nothing may act on or read it until a repair brings it back.
func needsRepair(svc queries.Service) *apiError {
	how := "POST /api/services/" + svc.ID.String() + "/repair starts one"
	if svc.Provider == jobs.ProviderTenantos {
		how = "a reinstall (POST /api/services/" + svc.ID.String() + "/bare-metal/reinstall) repairs an install that did not end; " +
			"a server gone or without the service's mark needs the provider's operators (put the mark back) or a cancellation"
	}
	return &apiError{Status: http.StatusConflict, ErrorKey: "service_needs_repair",
		Message: "Service needs repair (" + svc.RepairReason + "); " + how}
}

// insertJob records and enqueues a job for the caller and answers 202 with
// it, or with the first job again for a repeated Idempotency-Key.
func (s *Server) insertJob(w http.ResponseWriter, r *http.Request, service uuid.UUID, args jobs.Args) error {
	job, replayed, err := s.recordJob(r, service, args, nil)
	if err != nil {
		return err
	}
	answerJob(w, s.logger(r), job, replayed)
	return nil
}

// answerJob answers 202 with a job just recorded, or an earlier one
// returned again for its Idempotency-Key.
func answerJob(w http.ResponseWriter, log *slog.Logger, job queries.Job, replayed bool) {
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	} else {
		log.Info("job created", "job_id", job.ID, "kind", job.Kind, "service_id", job.ServiceID.UUID)
	}
	ok(w, http.StatusAccepted, "job", toJobJSON(job))
}

// recordJob records and enqueues a job for the caller, with secrets sealed
// (nil for none). For a repeated Idempotency-Key it returns the first job and
// replayed true.
func (s *Server) recordJob(r *http.Request, service uuid.UUID, args jobs.Args, secrets any) (queries.Job, bool, error) {
	team := callerOf(r).key.TeamID
	if callerOf(r).key.Platform || grantOf(r) != uuid.Nil {
		// The service's team, which a platform key's or a grantee's is not
		// (a team key's is, or the service would have been 404).
		svc, err := s.Queries.GetService(r.Context(), service)
		if err != nil {
			return queries.Job{}, false, fmt.Errorf("load service %s: %w", service, err)
		}
		team = svc.TeamID
	}
	return s.recordGuardedJob(r, team, service, args, secrets, nil)
}

// recordGuardedJob records a job of the team's on the service, when the
// service passes guard (nil for none).
func (s *Server) recordGuardedJob(r *http.Request, team, service uuid.UUID, args jobs.Args, secrets any, guard *jobs.Guard) (queries.Job, bool, error) {
	req, err := s.jobRequest(r, team, args, secrets)
	if err != nil {
		return queries.Job{}, false, err
	}
	req.ServiceID, req.Guard = service, guard
	job, replayed, err := s.Jobs.Insert(r.Context(), args, req)
	return job, replayed, jobError(err)
}

// jobRequest is the caller's request for a job of the team. The request
// hash leaves the secrets out: they are not stored, so a replay cannot
// compare them.
func (s *Server) jobRequest(r *http.Request, team uuid.UUID, args jobs.Args, secrets any) (jobs.Request, error) {
	c := callerOf(r)
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 255 {
		return jobs.Request{}, invalid("Idempotency-Key must be at most 255 characters")
	}
	canonical, err := json.Marshal(args)
	if err != nil {
		return jobs.Request{}, err
	}
	return jobs.Request{
		TeamID: team, APIKeyID: c.key.ID, PersonID: c.key.PersonID.UUID, GrantID: grantOf(r),
		RequestedBy: c.requestedBy(), IdempotencyKey: idem,
		RequestHash: requestHash(r.Method, r.URL.Path, canonical), Secrets: secrets,
	}, nil
}

// jobError answers what job insertion refuses.
func jobError(err error) error {
	var busy *jobs.BusyError
	switch {
	case errors.As(err, &busy):
		return &apiError{Status: http.StatusConflict, ErrorKey: "service_busy",
			Message: fmt.Sprintf("Service already has job %s %s", busy.Job.ID, busy.Job.Status),
			Extra:   envelope{"jobId": busy.Job.ID}}
	case errors.Is(err, jobs.ErrIdempotencyKeyReused):
		return &apiError{Status: http.StatusConflict, ErrorKey: "idempotency_key_reused",
			Message: "Idempotency-Key was already used for a different request"}
	case errors.Is(err, jobs.ErrNoSecretsKey):
		return &apiError{Status: http.StatusServiceUnavailable, ErrorKey: "secrets_unavailable",
			Message: "This server is not set up to accept passwords (SECRETS_KEY); leave the password out or try later"}
	}
	return err
}

// verify compares the service with its provider now (see jobs.Reconciler)
// and answers with the service as it stands afterwards and what differed.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	if aerr := usable(svc); aerr != nil && svc.Status != "needs_repair" {
		return aerr
	}
	svc, drift, err := s.Services.Verify(r.Context(), svc)
	var se *service.Error
	if err != nil && !errors.As(err, &se) {
		return providerError(err)
	}
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "service", toServiceJSON(svc), "drift", drift)
	return nil
}
