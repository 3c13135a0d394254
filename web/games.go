package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
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
func (s *Server) gameService(r *http.Request) (queries.Service, jobs.GameRef, error) {
	svc, err := s.teamService(r)
	if err != nil {
		return svc, jobs.GameRef{}, err
	}
	if svc.Provider != pterodactyl.Provider {
		return svc, jobs.GameRef{}, s.wrongProvider(pterodactyl.Provider, svc.Provider)
	}
	if s.Pterodactyl == nil {
		return svc, jobs.GameRef{}, providerMissing(pterodactyl.Provider)
	}
	if aerr := usable(svc); aerr != nil {
		return svc, jobs.GameRef{}, aerr
	}
	ref, err := jobs.PterodactylRef(&svc)
	return svc, ref, err
}

// gameServiceRequest orders a game server.
type gameServiceRequest struct {
	// TeamID is the team the service is for (see Server.newServiceTeam).
	TeamID           string         `json:"teamId"`
	Name             string         `json:"name"`
	Provider         string         `json:"provider"`
	Location         string         `json:"location"`
	BillingPeriodEnd string         `json:"billingPeriodEnd"`
	Plan             *jobs.GamePlan `json:"plan"`
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
	if req.Name == "" || len(req.Name) > 100 {
		errs = append(errs, "name is required and must be at most 100 characters")
	}
	if req.Plan == nil {
		errs = append(errs, "plan is required")
	} else {
		errs = append(errs, validateGamePlan(*req.Plan)...)
	}
	var end *time.Time
	if req.BillingPeriodEnd != "" {
		t, err := time.Parse(time.RFC3339, req.BillingPeriodEnd)
		if err != nil {
			errs = append(errs, "billingPeriodEnd must be an RFC 3339 time such as 2026-12-31T00:00:00Z")
		}
		end = &t
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	if s.Pterodactyl == nil {
		return providerMissing(pterodactyl.Provider)
	}
	egg, err := s.Pterodactyl.Egg(r.Context(), req.Plan.Nest, req.Plan.Egg)
	if err != nil {
		return providerError(err)
	}
	if errs := validateEggVariables(egg, req.Plan.Environment, true); len(errs) > 0 {
		return &apiError{Status: http.StatusBadRequest, Message: "Validation failed for egg variables", ValidationErrors: errs}
	}
	plan, _ := json.Marshal(req.Plan)
	return s.createWithJob(w, r, queries.CreateServiceParams{
		TeamID: team, Name: req.Name, Provider: pterodactyl.Provider, Location: req.Location,
		ProviderRef: []byte("{}"), Plan: plan, Status: "pending", BillingPeriodEnd: end,
	}, func(id uuid.UUID) jobs.Args { return jobs.GameProvisionArgs{ServiceID: id} }, nil)
}

// eggRuleRE splits a Laravel rule ("max:20", "in:a,b", "regex:/x/").
var eggRuleRE = regexp.MustCompile(`^([a-z_]+)(?::(.*))?$`)

// validateEggVariables checks values against the egg's variable rules, the
// way the panel does, and returns one message per failing variable. With
// all, variables left out are checked as empty; otherwise only the given
// ones are. Variables the customer may not edit are refused.
func validateEggVariables(egg pterodactyl.Egg, values map[string]string, all bool) []string {
	var errs []string
	known := map[string]bool{}
	for _, v := range egg.Variables {
		known[v.EnvVariable] = true
		val, given := values[v.EnvVariable]
		if !given && !all {
			continue
		}
		if given && !v.UserEditable {
			errs = append(errs, fmt.Sprintf("The %s variable may not be changed.", v.Name))
			continue
		}
		if !given {
			val = v.DefaultValue
		}
		if msg := checkEggRules(v.Name, val, v.Rules); msg != "" {
			errs = append(errs, msg)
		}
	}
	for _, k := range sortedKeys(values) {
		if !known[k] {
			errs = append(errs, fmt.Sprintf("The %s variable does not exist for this egg.", k))
		}
	}
	return errs
}

// checkEggRules applies a variable's rules (required, nullable, string,
// integer, numeric, boolean, min, max, between, in, regex) to a value.
func checkEggRules(name, val, rules string) string {
	parts := strings.Split(rules, "|")
	nullable, numeric := slices.Contains(parts, "nullable"), slices.Contains(parts, "integer") || slices.Contains(parts, "numeric")
	if val == "" {
		if slices.Contains(parts, "required") {
			return fmt.Sprintf("The %s variable field is required.", name)
		}
		if nullable || !slices.Contains(parts, "required") {
			return ""
		}
	}
	size := func() float64 {
		if numeric {
			f, _ := strconv.ParseFloat(val, 64)
			return f
		}
		return float64(len([]rune(val)))
	}
	for _, p := range parts {
		m := eggRuleRE.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		arg := m[2]
		switch m[1] {
		case "integer":
			if _, err := strconv.Atoi(val); err != nil {
				return fmt.Sprintf("The %s variable must be an integer.", name)
			}
		case "numeric":
			if _, err := strconv.ParseFloat(val, 64); err != nil {
				return fmt.Sprintf("The %s variable must be a number.", name)
			}
		case "boolean":
			if !slices.Contains([]string{"0", "1", "true", "false"}, val) {
				return fmt.Sprintf("The %s variable field must be true or false.", name)
			}
		case "max":
			if n, err := strconv.ParseFloat(arg, 64); err == nil && size() > n {
				return fmt.Sprintf("The %s variable may not be greater than %s%s.", name, arg, unit(numeric))
			}
		case "min":
			if n, err := strconv.ParseFloat(arg, 64); err == nil && size() < n {
				return fmt.Sprintf("The %s variable must be at least %s%s.", name, arg, unit(numeric))
			}
		case "between":
			lo, hi, _ := strings.Cut(arg, ",")
			l, _ := strconv.ParseFloat(lo, 64)
			h, _ := strconv.ParseFloat(hi, 64)
			if sz := size(); sz < l || sz > h {
				return fmt.Sprintf("The %s variable must be between %s and %s%s.", name, lo, hi, unit(numeric))
			}
		case "in":
			if !slices.Contains(strings.Split(arg, ","), val) {
				return fmt.Sprintf("The selected %s variable is invalid.", name)
			}
		case "regex":
			pattern := strings.TrimSuffix(strings.TrimPrefix(arg, "/"), "/")
			if re, err := regexp.Compile(pattern); err == nil && !re.MatchString(val) {
				return fmt.Sprintf("The %s variable format is invalid.", name)
			}
		}
	}
	return ""
}

func unit(numeric bool) string {
	if numeric {
		return ""
	}
	return " characters"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
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
	svc, _, err := s.gameService(r)
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
	e, err := s.Pterodactyl.Egg(r.Context(), nest, egg)
	if err != nil {
		return providerError(err)
	}
	if errs := validateEggVariables(e, req.Environment, false); len(errs) > 0 {
		return &apiError{Status: http.StatusBadRequest, Message: "Validation failed for egg variables", ValidationErrors: errs}
	}
	return s.insertJob(w, r, svc.ID, jobs.GameReinstallArgs{ServiceID: svc.ID, Egg: req.Egg, DockerImage: req.DockerImage, Environment: req.Environment})
}

// changeGamePlan changes a game server's limits in place.
func (s *Server) changeGamePlan(w http.ResponseWriter, r *http.Request) error {
	svc, _, err := s.gameService(r)
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
	svc, ref, err := s.gameService(r)
	if err != nil {
		return err
	}
	plan, err := jobs.GameServicePlan(&svc)
	if err != nil {
		return err
	}
	backups, err := s.Pterodactyl.Backups(r.Context(), ref.Identifier)
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
	svc, ref, err := s.gameService(r)
	if err != nil {
		return err
	}
	id := r.PathValue("backupId")
	if _, err := s.Pterodactyl.Backup(r.Context(), ref.Identifier, id); err != nil {
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
	svc, ref, err := s.gameService(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		vars, err := s.Pterodactyl.StartupVariables(r.Context(), ref.Identifier)
		if err != nil {
			return providerError(err)
		}
		out := make([]variableJSON, 0, len(vars))
		for _, v := range vars {
			out = append(out, toVariableJSON(v))
		}
		ok(w, http.StatusOK, "variables", out)
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
	plan, err := jobs.GameServicePlan(&svc)
	if err != nil {
		return err
	}
	e, err := s.Pterodactyl.Egg(r.Context(), plan.Nest, plan.Egg)
	if err != nil {
		return providerError(err)
	}
	if errs := validateEggVariables(e, map[string]string{req.Key: req.Value}, false); len(errs) > 0 {
		return &apiError{Status: http.StatusBadRequest, Message: "Validation failed for egg variables", ValidationErrors: errs}
	}
	v, err := s.Pterodactyl.SetStartupVariable(r.Context(), ref.Identifier, req.Key, req.Value)
	if err != nil {
		if errs := pterodactyl.ValidationErrors(err); len(errs) > 0 {
			return &apiError{Status: http.StatusBadRequest, Message: "Validation failed for egg variables", ValidationErrors: errs}
		}
		return providerError(err)
	}
	ok(w, http.StatusOK, "variable", toVariableJSON(v))
	return nil
}

// variableJSON is a game server's startup variable as its owner sees it.
type variableJSON struct {
	Name         string `json:"name"`
	Description  string `json:"description"`
	EnvVariable  string `json:"envVariable"`
	DefaultValue string `json:"defaultValue"`
	Value        string `json:"value"`
	Editable     bool   `json:"editable"`
	// Rules are the panel's (Laravel) validation rules of the value.
	Rules string `json:"rules"`
}

func toVariableJSON(v pterodactyl.Variable) variableJSON {
	return variableJSON{Name: v.Name, Description: v.Description, EnvVariable: v.EnvVariable, DefaultValue: v.DefaultValue,
		Value: v.ServerValue, Editable: v.UserEditable, Rules: v.Rules}
}

// gameRead returns a handler that answers, under key, what read gives for
// the {id} game server, live from the panel.
func gameRead[T any](s *Server, key string, read func(r *http.Request, identifier string) (T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		_, ref, err := s.gameService(r)
		if err != nil {
			return err
		}
		v, err := read(r, ref.Identifier)
		if err != nil {
			return providerError(err)
		}
		ok(w, http.StatusOK, key, v)
		return nil
	}
}

// gameBackups lists a game server's backups.
func (s *Server) gameBackups() handlerFunc {
	return gameRead(s, "backups", func(r *http.Request, id string) ([]jobs.GameBackup, error) {
		backups, err := s.Pterodactyl.Backups(r.Context(), id)
		out := make([]jobs.GameBackup, 0, len(backups))
		for _, b := range backups {
			out = append(out, jobs.GameBackupOf(b))
		}
		return out, err
	})
}

// gameBackupDownload answers a signed download URL for a backup.
func (s *Server) gameBackupDownload() handlerFunc {
	return gameRead(s, "url", func(r *http.Request, id string) (string, error) {
		return s.Pterodactyl.BackupDownloadURL(r.Context(), id, r.PathValue("backupId"))
	})
}

// allocationJSON is a game server's address and port.
type allocationJSON struct {
	ID      int    `json:"id"`
	IP      string `json:"ip"`
	IPAlias string `json:"ipAlias"`
	Port    int    `json:"port"`
	Notes   string `json:"notes"`
	// Default marks the server's primary allocation.
	Default bool `json:"default"`
}

// allocations lists the game server's ports.
func (s *Server) allocations() handlerFunc {
	return gameRead(s, "allocations", func(r *http.Request, id string) ([]allocationJSON, error) {
		allocs, err := s.Pterodactyl.Allocations(r.Context(), id)
		out := make([]allocationJSON, 0, len(allocs))
		for _, a := range allocs {
			out = append(out, allocationJSON{ID: a.ID, IP: a.IP, IPAlias: a.IPAlias, Port: a.Port, Notes: a.Notes, Default: a.Default})
		}
		return out, err
	})
}
