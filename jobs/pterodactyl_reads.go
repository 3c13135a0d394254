package jobs

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/wings"
	"github.com/hostfleet/provisiond/queries"
)

// This file holds the Pterodactyl provider's live reads, which the API
// answers from (startup variables, allocations, backups, the console), and
// the check of a game's variables against its egg's rules.

// CheckEnvironment checks values against the rules of the egg's variables,
// the way the panel does, and returns one message per failing variable
// (nil when all pass). With all, variables left out are checked as their
// defaults; otherwise only the given ones are. Variables the customer may
// not edit are refused.
func (w *GameWorkers) CheckEnvironment(ctx context.Context, nest, egg int, values map[string]string, all bool) ([]string, error) {
	e, err := w.Pterodactyl.Egg(ctx, nest, egg)
	if err != nil {
		return nil, err
	}
	return validateEggVariables(e, values, all), nil
}

// Variable is a game server's startup variable as its owner sees it.
type Variable struct {
	Name         string `json:"name"`
	Description  string `json:"description"`
	EnvVariable  string `json:"envVariable"`
	DefaultValue string `json:"defaultValue"`
	Value        string `json:"value"`
	Editable     bool   `json:"editable"`
	// Rules are the panel's (Laravel) validation rules of the value.
	Rules string `json:"rules"`
}

func variableOf(v pterodactyl.Variable) Variable {
	return Variable{Name: v.Name, Description: v.Description, EnvVariable: v.EnvVariable, DefaultValue: v.DefaultValue,
		Value: v.ServerValue, Editable: v.UserEditable, Rules: v.Rules}
}

// StartupVariables lists the service's game server's startup variables.
func (w *GameWorkers) StartupVariables(ctx context.Context, svc *queries.Service) ([]Variable, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return nil, err
	}
	vars, err := w.Pterodactyl.StartupVariables(ctx, ref.Identifier)
	out := make([]Variable, 0, len(vars))
	for _, v := range vars {
		out = append(out, variableOf(v))
	}
	return out, err
}

// SetStartupVariable sets one startup variable, after checking it against
// the egg's rules; a refusal (ours or the panel's) comes back as
// validation messages.
func (w *GameWorkers) SetStartupVariable(ctx context.Context, svc *queries.Service, key, value string) (Variable, []string, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return Variable{}, nil, err
	}
	plan, err := GameServicePlan(svc)
	if err != nil {
		return Variable{}, nil, err
	}
	if errs, err := w.CheckEnvironment(ctx, plan.Nest, plan.Egg, map[string]string{key: value}, false); err != nil || len(errs) > 0 {
		return Variable{}, errs, err
	}
	v, err := w.Pterodactyl.SetStartupVariable(ctx, ref.Identifier, key, value)
	if errs := pterodactyl.ValidationErrors(err); len(errs) > 0 {
		return Variable{}, errs, nil
	}
	return variableOf(v), nil, err
}

// Allocation is a game server's address and port.
type Allocation struct {
	ID      int    `json:"id"`
	IP      string `json:"ip"`
	IPAlias string `json:"ipAlias"`
	Port    int    `json:"port"`
	Notes   string `json:"notes"`
	// Default marks the server's primary allocation.
	Default bool `json:"default"`
}

// Allocations lists the service's game server's ports.
func (w *GameWorkers) Allocations(ctx context.Context, svc *queries.Service) ([]Allocation, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return nil, err
	}
	allocs, err := w.Pterodactyl.Allocations(ctx, ref.Identifier)
	out := make([]Allocation, 0, len(allocs))
	for _, a := range allocs {
		out = append(out, Allocation{ID: a.ID, IP: a.IP, IPAlias: a.IPAlias, Port: a.Port, Notes: a.Notes, Default: a.Default})
	}
	return out, err
}

// Backups lists the service's game server's backups.
func (w *GameWorkers) Backups(ctx context.Context, svc *queries.Service) ([]GameBackup, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return nil, err
	}
	backups, err := w.Pterodactyl.Backups(ctx, ref.Identifier)
	out := make([]GameBackup, 0, len(backups))
	for _, b := range backups {
		out = append(out, GameBackupOf(b))
	}
	return out, err
}

// HasBackup returns nil when the game server has the backup (an error
// wrapping failure.ErrNotFound when not).
func (w *GameWorkers) HasBackup(ctx context.Context, svc *queries.Service, id string) error {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return err
	}
	_, err = w.Pterodactyl.Backup(ctx, ref.Identifier, id)
	return err
}

// BackupDownloadURL returns a signed download URL for one backup.
func (w *GameWorkers) BackupDownloadURL(ctx context.Context, svc *queries.Service, id string) (string, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return "", err
	}
	return w.Pterodactyl.BackupDownloadURL(ctx, ref.Identifier, id)
}

// Online reports whether the service's game server runs (Wings drops a
// console command to a stopped server without a word).
func (w *GameWorkers) Online(ctx context.Context, svc *queries.Service) (bool, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return false, err
	}
	res, err := w.Pterodactyl.Resources(ctx, ref.Identifier)
	return err == nil && res.State != "offline", err
}

// WatchConsole joins the service's game server's console on Consoles,
// under key (one upstream per key); the Wings credentials are fetched
// from the panel and stay in the hub.
func (w *GameWorkers) WatchConsole(ctx context.Context, svc *queries.Service, key string) (*wings.Viewer, error) {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return nil, err
	}
	return w.Consoles.Watch(ctx, key, w.credentials(ref.Identifier))
}

// SendConsole sends a console event ("send command", "set state") to the
// service's game server through Consoles.
func (w *GameWorkers) SendConsole(ctx context.Context, svc *queries.Service, key, event, arg string) error {
	ref, err := PterodactylRef(svc)
	if err != nil {
		return err
	}
	return w.Consoles.Send(ctx, key, w.credentials(ref.Identifier), event, arg)
}

func (w *GameWorkers) credentials(identifier string) wings.Credentials {
	return func(ctx context.Context) (string, string, error) {
		return w.Pterodactyl.WebsocketCredentials(ctx, identifier)
	}
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
