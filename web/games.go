package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// byProvider routes a service endpoint to the handler of the service's
// provider; a provider without one is a 400.
func (s *Server) byProvider(handlers map[string]handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		svc, err := s.teamService(r)
		if err != nil {
			return err
		}
		h, ok := handlers[svc.Provider]
		if !ok {
			return s.unsupported(svc.Provider)
		}
		return h(w, r)
	}
}

// gameService loads the {id} service, which must be a game server that a
// job can act on.
func (s *Server) gameService(r *http.Request) (queries.Service, error) {
	svc, err := s.teamService(r)
	if err != nil {
		return svc, err
	}
	if svc.Provider != jobs.ProviderPterodactyl {
		return svc, s.wrongProvider(jobs.ProviderPterodactyl, svc.Provider)
	}
	if s.Games == nil {
		return svc, providerMissing(jobs.ProviderPterodactyl)
	}
	if aerr := usable(svc); aerr != nil {
		return svc, aerr
	}
	if _, err := jobs.PterodactylRef(&svc); err != nil {
		return svc, err
	}
	return svc, nil
}

// gameServiceRequest orders a game server.
type gameServiceRequest struct {
	serviceOrder
	Plan *jobs.GamePlan `json:"plan"`
}

func validateGamePlan(p jobs.GamePlan) []string {
	var errs []string
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, msg)
		}
	}
	check(p.MemoryMB >= 128 && p.MemoryMB <= 1<<20, "plan.memoryMb must be from 128 to 1048576")
	check(p.DiskMB >= 256 && p.DiskMB <= 1<<24, "plan.diskMb must be from 256 to 16777216")
	check(p.CPU >= 0 && p.CPU <= 100*512, "plan.cpu must be from 0 (unlimited) to 51200 percent")
	check(p.SwapMB >= -1 && p.SwapMB <= 1<<20, "plan.swapMb must be from -1 (unlimited) to 1048576")
	check(p.Nest > 0 && p.Egg > 0, "plan.nest and plan.egg are required")
	check(p.User > 0, "plan.user is required: the panel user that owns the server")
	check(len(p.Locations) > 0, "plan.locations must name at least one location")
	check(p.Databases >= 0 && p.Allocations >= 0 && p.Backups >= 0, "plan.databases, allocations and backups cannot be negative")
	check(len(p.Locations) <= 100, "plan.locations may name at most 100 locations")
	check(len(p.Startup) <= 2048, "plan.startup must be at most 2048 characters")
	errs = append(errs, validateImageAndEnvironment("plan.", p.DockerImage, p.Environment)...)
	return errs
}

// validateImageAndEnvironment bounds what a plan or a reinstall gives the
// panel: an image name as long as the panel takes (191), and at most 100
// variables of bounded size.
func validateImageAndEnvironment(prefix, image string, env map[string]string) []string {
	var errs []string
	if len(image) > 191 {
		errs = append(errs, prefix+"dockerImage must be at most 191 characters")
	}
	if len(env) > 100 {
		errs = append(errs, prefix+"environment may hold at most 100 variables")
	}
	for k, v := range env {
		if len(k) > 191 || len(v) > 4096 {
			errs = append(errs, prefix+"environment: names must be at most 191 characters and values at most 4096")
			break
		}
	}
	return errs
}

// createGameService creates a pending game service and its provision job.
func (s *Server) createGameService(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req gameServiceRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	team, errs := s.newServiceTeam(r, req.TeamID)
	end, oerrs := req.serviceOrder.validate()
	errs = append(errs, oerrs...)
	if req.Plan == nil {
		errs = append(errs, "plan is required")
	} else {
		errs = append(errs, validateGamePlan(*req.Plan)...)
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	if s.Games == nil {
		return providerMissing(jobs.ProviderPterodactyl)
	}
	if errs, err := s.Games.CheckEnvironment(r.Context(), req.Plan.Nest, req.Plan.Egg, req.Plan.Environment, true); err != nil {
		return providerError(err)
	} else if len(errs) > 0 {
		return eggInvalid(errs)
	}
	plan, _ := json.Marshal(req.Plan)
	return s.createWithJob(w, r, queries.CreateServiceParams{
		TeamID: team, Name: req.Name, Provider: jobs.ProviderPterodactyl, Location: req.Location,
		ProviderRef: []byte("{}"), Plan: plan, Status: "pending", BillingPeriodEnd: end,
	}, func(id uuid.UUID) jobs.Args { return jobs.GameProvisionArgs{ServiceID: id} }, nil)
}

// eggInvalid answers variables that fail their egg's rules.
func eggInvalid(errs []string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: "Validation failed for egg variables", ValidationErrors: errs}
}

// gameReinstallRequest reinstalls a game server.
type gameReinstallRequest struct {
	Egg         int               `json:"egg"`
	Nest        int               `json:"nest"`
	DockerImage string            `json:"dockerImage"`
	Environment map[string]string `json:"environment"`
}

// reinstallGame checks the variables against the egg's rules before any
// job exists, then starts the reinstall.
func (s *Server) reinstallGame(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	var req gameReinstallRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	if errs := validateImageAndEnvironment("", req.DockerImage, req.Environment); len(errs) > 0 {
		return invalid(errs...)
	}
	plan, err := jobs.GameServicePlan(&svc)
	if err != nil {
		return err
	}
	nest, egg := cmp.Or(req.Nest, plan.Nest), cmp.Or(req.Egg, plan.Egg)
	if errs, err := s.Games.CheckEnvironment(r.Context(), nest, egg, req.Environment, false); err != nil {
		return providerError(err)
	} else if len(errs) > 0 {
		return eggInvalid(errs)
	}
	return s.insertJob(w, r, svc.ID, jobs.GameReinstallArgs{ServiceID: svc.ID, Egg: req.Egg, DockerImage: req.DockerImage, Environment: req.Environment})
}

// changeGamePlan changes a game server's limits in place.
func (s *Server) changeGamePlan(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Plan *jobs.GamePlan `json:"plan"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if req.Plan == nil {
		return invalid("plan is required")
	}
	if errs := validateGamePlan(*req.Plan); len(errs) > 0 {
		return invalid(errs...)
	}
	return s.insertJob(w, r, svc.ID, jobs.GameChangePlanArgs{ServiceID: svc.ID, Plan: *req.Plan})
}

// createGameBackup starts a backup; the panel enforces the plan's limit.
func (s *Server) createGameBackup(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	plan, err := jobs.GameServicePlan(&svc)
	if err != nil {
		return err
	}
	backups, err := s.Games.Backups(r.Context(), &svc)
	if err != nil {
		return providerError(err)
	}
	if len(backups) >= plan.Backups {
		return &apiError{Status: http.StatusConflict, ErrorKey: "backup_limit_reached",
			Message: fmt.Sprintf("The plan keeps at most %d backups; delete one first", plan.Backups)}
	}
	var req backupRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	return s.insertJob(w, r, svc.ID, jobs.GameBackupArgs{ServiceID: svc.ID, Action: "create", Name: req.Note})
}

// gameBackupAction restores (POST, optional {"truncate":true}) or deletes
// (DELETE) one backup.
func (s *Server) gameBackupAction(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	id := r.PathValue("backupId")
	if err := s.Games.HasBackup(r.Context(), &svc, id); err != nil {
		return providerError(err)
	}
	args := jobs.GameBackupArgs{ServiceID: svc.ID, Action: "delete", Backup: id}
	if r.Method == http.MethodPost {
		var req struct {
			Truncate bool `json:"truncate"`
		}
		if aerr := readOptionalJSON(w, r, &req); aerr != nil {
			return aerr
		}
		args.Action, args.Truncate = "restore", req.Truncate
	}
	return s.insertJob(w, r, svc.ID, args)
}

// startupVariables lists (GET) or sets (PUT {"key","value"}) the game
// server's startup variables, checked against the egg's rules.
func (s *Server) startupVariables(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.gameService(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		vars, err := s.Games.StartupVariables(r.Context(), &svc)
		if err != nil {
			return providerError(err)
		}
		ok(w, http.StatusOK, "variables", vars)
		return nil
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if req.Key == "" {
		return invalid("key is required")
	}
	if errs := validateImageAndEnvironment("", "", map[string]string{req.Key: req.Value}); len(errs) > 0 {
		return invalid(errs...)
	}
	v, errs, err := s.Games.SetStartupVariable(r.Context(), &svc, req.Key, req.Value)
	switch {
	case err != nil:
		return providerError(err)
	case len(errs) > 0:
		return eggInvalid(errs)
	}
	ok(w, http.StatusOK, "variable", v)
	return nil
}

// gameRead returns a handler that answers, under key, what read gives for
// the {id} game server, live from the panel.
func gameRead[T any](s *Server, key string, read func(r *http.Request, svc *queries.Service) (T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		svc, err := s.gameService(r)
		if err != nil {
			return err
		}
		v, err := read(r, &svc)
		if err != nil {
			return providerError(err)
		}
		ok(w, http.StatusOK, key, v)
		return nil
	}
}

// gameBackups lists a game server's backups.
func (s *Server) gameBackups() handlerFunc {
	return gameRead(s, "backups", func(r *http.Request, svc *queries.Service) ([]jobs.GameBackup, error) {
		return s.Games.Backups(r.Context(), svc)
	})
}

// gameBackupDownload answers a signed download URL for a backup.
func (s *Server) gameBackupDownload() handlerFunc {
	return gameRead(s, "url", func(r *http.Request, svc *queries.Service) (string, error) {
		return s.Games.BackupDownloadURL(r.Context(), svc, r.PathValue("backupId"))
	})
}

// allocations lists the game server's ports.
func (s *Server) allocations() handlerFunc {
	return gameRead(s, "allocations", func(r *http.Request, svc *queries.Service) ([]jobs.Allocation, error) {
		return s.Games.Allocations(r.Context(), svc)
	})
}
