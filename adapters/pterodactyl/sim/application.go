package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// orNull is a nullable string column: "" is null.
func orNull(v string) any {
	if v == "" {
		return nil
	}
	return v
}

// toInt reads a validated number, truncating a fraction as PHP's integer
// cast does; null is 0.
func toInt(v any) int {
	f, _ := number(v)
	return int(f)
}

// partial is spatie/laravel-query-builder's default filter: a
// case-insensitive substring match on ?filter[name].
func partial(r *http.Request, name, value string) bool {
	want := r.URL.Query().Get("filter[" + name + "]")
	return want == "" || strings.Contains(strings.ToLower(value), strings.ToLower(want))
}

// appServer finds the server of an application API path; the lock must be
// held.
func (s *Server) appServer(r *http.Request) (*serverState, error) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if gs, ok := s.servers[id]; ok && err == nil {
		return gs, nil
	}
	return nil, notFound()
}

// environment is the server's environment as Wings receives it: the egg's
// variables plus the panel's own; the lock must be held.
func (s *Server) environment(gs *serverState) map[string]any {
	env := map[string]any{}
	for k, v := range gs.Environment {
		env[k] = v
	}
	env["STARTUP"] = gs.Startup
	env["P_SERVER_UUID"] = gs.UUID
	env["P_SERVER_ALLOCATION_LIMIT"] = gs.FeatureLimits.Allocations
	if n, ok := s.nodes[gs.NodeID]; ok {
		if l, ok := s.locations[n.LocationID]; ok {
			env["P_SERVER_LOCATION"] = l.Short
		}
	}
	return env
}

// serverAllocations are the allocations assigned to a server, by id; the
// lock must be held.
func (s *Server) serverAllocations(gs *serverState) []*Allocation {
	var out []*Allocation
	for _, a := range sorted(s.allocs) {
		if a.ServerID == gs.ID {
			out = append(out, a)
		}
	}
	return out
}

func limitsJSON(l Limits) map[string]any {
	return map[string]any{"memory": l.Memory, "swap": l.Swap, "disk": l.Disk, "io": l.IO, "cpu": l.CPU,
		"threads": orNull(l.Threads), "oom_disabled": l.OOMDisabled}
}

func featureLimitsJSON(f FeatureLimits) map[string]any {
	return map[string]any{"databases": f.Databases, "allocations": f.Allocations, "backups": f.Backups}
}

// appServerItem is the application API's server item with the requested
// relationships; the lock must be held.
func (s *Server) appServerItem(gs *serverState, include []string) map[string]any {
	installed := 1
	if gs.Status == StatusInstalling || gs.Status == StatusInstallFailed {
		installed = 0
	}
	nest := 0
	if egg, ok := s.eggs[gs.EggID]; ok {
		nest = egg.NestID
	}
	attrs := map[string]any{
		"id": gs.ID, "external_id": orNull(gs.ExternalID), "uuid": gs.UUID, "identifier": gs.Identifier,
		"name": gs.Name, "description": gs.Description, "status": orNull(gs.Status),
		"suspended":      gs.Status == StatusSuspended,
		"limits":         limitsJSON(gs.Limits),
		"feature_limits": featureLimitsJSON(gs.FeatureLimits),
		"user":           gs.OwnerID, "node": gs.NodeID, "allocation": gs.AllocationID, "nest": nest, "egg": gs.EggID,
		"container": map[string]any{"startup_command": gs.Startup, "image": gs.Image, "installed": installed,
			"environment": s.environment(gs)},
		"updated_at": timestamp(gs.UpdatedAt), "created_at": timestamp(gs.CreatedAt),
	}
	rel := map[string]any{}
	if slices.Contains(include, "allocations") {
		var items []map[string]any
		for _, a := range s.serverAllocations(gs) {
			items = append(items, appAllocationItem(a))
		}
		rel["allocations"] = list(items)
	}
	if slices.Contains(include, "variables") {
		var items []map[string]any
		if egg, ok := s.eggs[gs.EggID]; ok {
			for _, v := range egg.Variables {
				attrs := s.eggVariableAttrs(egg, v)
				attrs["server_value"] = gs.Environment[v.EnvVariable]
				items = append(items, item("server_variable", attrs))
			}
		}
		rel["variables"] = list(items)
	}
	if len(rel) > 0 {
		attrs["relationships"] = rel
	}
	return item("server", attrs)
}

func appAllocationItem(a *Allocation) map[string]any {
	return item("allocation", map[string]any{"id": a.ID, "ip": a.IP, "alias": orNull(a.Alias), "port": a.Port,
		"notes": orNull(a.Notes), "assigned": a.ServerID != 0})
}

// eggVariableAttrs is an egg variable as the application API shows it.
func (s *Server) eggVariableAttrs(egg *Egg, v EggVariable) map[string]any {
	return map[string]any{"id": v.ID, "egg_id": egg.ID, "name": v.Name, "description": v.Description,
		"env_variable": v.EnvVariable, "default_value": v.DefaultValue, "user_viewable": v.UserViewable,
		"user_editable": v.UserEditable, "rules": v.Rules,
		"created_at": timestamp(s.epoch), "updated_at": timestamp(s.epoch)}
}

func (s *Server) listServers(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	for _, gs := range sorted(s.servers) {
		if partial(r, "uuid", gs.UUID) && partial(r, "uuidShort", gs.Identifier) && partial(r, "name", gs.Name) &&
			partial(r, "description", gs.Description) && partial(r, "image", gs.Image) && partial(r, "external_id", gs.ExternalID) {
			items = append(items, s.appServerItem(gs, includes(r)))
		}
	}
	return http.StatusOK, paged(r, items, 50, 100), nil
}

func (s *Server) getServer(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.appServer(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.appServerItem(gs, includes(r)), nil
}

func (s *Server) getExternalServer(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, gs := range s.servers {
		if gs.ExternalID != "" && gs.ExternalID == r.PathValue("external_id") {
			return http.StatusOK, s.appServerItem(gs, includes(r)), nil
		}
	}
	return 0, nil, notFound()
}

// Look-ups behind "exists" and "unique" rules; the lock must be held.

func (s *Server) userExists(v any) bool {
	id, ok := integer(v)
	_, found := s.users[id]
	return ok && found
}

func (s *Server) eggExists(v any) bool {
	id, ok := integer(v)
	_, found := s.eggs[id]
	return ok && found
}

func (s *Server) allocationFree(v any) bool {
	id, ok := integer(v)
	a, found := s.allocs[id]
	return ok && found && a.ServerID == 0
}

// externalIDFree is the unique rule on servers.external_id, ignoring the
// server being updated.
func (s *Server) externalIDFree(self int) func(any) bool {
	return func(v any) bool {
		for _, gs := range s.servers {
			if gs.ID != self && gs.ExternalID == text(v) {
				return false
			}
		}
		return true
	}
}

// threadsRule is the panel's rule on a server's CPU pinning.
const threadsRule = "nullable|regex:/^[0-9-,]+$/"

func (s *Server) createServer(r *http.Request, c *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	checks := []check{
		{field: "external_id", rules: "sometimes|nullable|string|between:1,191|unique", unique: s.externalIDFree(0)},
		{field: "name", rules: "required|string|min:1|max:191"},
		{field: "description", rules: "nullable|string"},
		{field: "user", rules: "required|integer|exists", exists: s.userExists},
		{field: "egg", rules: "required|exists", exists: s.eggExists},
		{field: "docker_image", rules: "required|string|max:191"},
		{field: "startup", rules: "required|string"},
		{field: "environment", rules: "present|array"},
		{field: "skip_scripts", rules: "sometimes|boolean"},
		{field: "oom_disabled", rules: "sometimes|boolean"},
		{field: "limits", rules: "required|array"},
		{field: "limits.memory", rules: "required|numeric|min:0"},
		{field: "limits.swap", rules: "required|numeric|min:-1"},
		{field: "limits.disk", rules: "required|numeric|min:0"},
		{field: "limits.io", rules: "required|numeric|between:10,1000"},
		{field: "limits.threads", rules: threadsRule},
		{field: "limits.cpu", rules: "required|numeric|min:0"},
		{field: "feature_limits", rules: "required|array"},
		{field: "feature_limits.databases", rules: "present|nullable|integer|min:0"},
		{field: "feature_limits.allocations", rules: "sometimes|nullable|integer|min:0"},
		{field: "feature_limits.backups", rules: "present|nullable|integer|min:0"},
	}
	deploy := body["deploy"] != nil
	if deploy {
		checks = append(checks,
			check{field: "deploy", rules: "sometimes|required|array"},
			check{field: "deploy.locations", rules: "present|array"},
			check{field: "deploy.locations.*", rules: "integer|min:1"},
			check{field: "deploy.dedicated_ip", rules: "required_with:deploy,boolean"},
			check{field: "deploy.port_range", rules: "present|array"},
			check{field: "deploy.port_range.*", rules: "string"})
	} else {
		checks = append(checks,
			check{field: "allocation.default", rules: "required|integer|bail|exists", exists: s.allocationFree},
			check{field: "allocation.additional.*", rules: "integer|exists", exists: s.allocationFree})
	}
	checks = append(checks, check{field: "start_on_completion", rules: "sometimes|boolean"})
	if err := validate(body, checks); err != nil {
		return 0, nil, err
	}
	memory, disk := toInt(lookupValue(body, "limits.memory")), toInt(lookupValue(body, "limits.disk"))
	var alloc *Allocation
	if deploy {
		if alloc, err = s.deploy(body, memory, disk); err != nil {
			return 0, nil, err
		}
	} else {
		alloc = s.allocs[toInt(lookupValue(body, "allocation.default"))]
	}
	egg := s.eggs[toInt(body["egg"])]
	envIn, _ := body["environment"].(map[string]any)
	env, err := s.validateVariables(egg, envIn)
	if err != nil {
		return 0, nil, err
	}
	oom := true // the panel's default when the request leaves it out
	if v, ok := boolean(body["oom_disabled"]); ok {
		oom = v
	}
	skip, _ := boolean(body["skip_scripts"])
	startAfter, _ := boolean(body["start_on_completion"])
	now := time.Now()
	id := uuid.NewString()
	gs := &serverState{GameServer: GameServer{
		ID: nextID(s.servers), ExternalID: text(body["external_id"]), UUID: id, Identifier: id[:8],
		Name: text(body["name"]), Description: text(body["description"]), State: StateOffline,
		OwnerID: toInt(body["user"]), NodeID: alloc.NodeID, AllocationID: alloc.ID, EggID: egg.ID,
		Limits: Limits{Memory: memory, Swap: toInt(lookupValue(body, "limits.swap")), Disk: disk,
			IO: toInt(lookupValue(body, "limits.io")), CPU: toInt(lookupValue(body, "limits.cpu")),
			Threads: text(lookupValue(body, "limits.threads")), OOMDisabled: oom},
		FeatureLimits: FeatureLimits{Databases: toInt(lookupValue(body, "feature_limits.databases")),
			Allocations: toInt(lookupValue(body, "feature_limits.allocations")),
			Backups:     toInt(lookupValue(body, "feature_limits.backups"))},
		Image: text(body["docker_image"]), Startup: text(body["startup"]), Environment: env,
		SkipScripts: skip, CreatedAt: now, UpdatedAt: now,
	}, conns: map[*wsConn]bool{}}
	s.servers[gs.ID] = gs
	alloc.ServerID = gs.ID
	if extra, ok := lookupValue(body, "allocation.additional").([]any); ok && !deploy {
		for _, v := range extra {
			s.allocs[toInt(v)].ServerID = gs.ID
		}
	}
	s.install(gs, c.taskError, startAfter, false)
	return http.StatusCreated, s.appServerItem(gs, includes(r)), nil
}

// lookupValue is lookup without the presence flag.
func lookupValue(data map[string]any, path string) any {
	v, _ := lookup(data, path)
	return v
}

// validateVariables validates an environment against every variable of the
// egg, as the panel's VariableValidatorService does at admin level (a
// variable left out is validated as null), and returns the values to store.
func (s *Server) validateVariables(egg *Egg, in map[string]any) (map[string]string, error) {
	env := map[string]any{}
	for _, v := range egg.Variables {
		env[v.EnvVariable] = in[v.EnvVariable]
	}
	if err := validate(map[string]any{"environment": env}, variableChecks(egg, true)); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range env {
		out[k] = text(v)
	}
	return out, nil
}

// portRange is one deploy.port_range entry: "25565" or "25565-25570".
var portRange = regexp.MustCompile(`^(\d{1,5})(?:-(\d{1,5}))?$`)

// deploy picks an allocation for deploy{locations, dedicated_ip,
// port_range} as the panel's FindViableNodesService and
// AllocationSelectionService do, taking the lowest id instead of a random
// one so that runs repeat; the lock must be held.
func (s *Server) deploy(body map[string]any, memory, disk int) (*Allocation, error) {
	var locations []int
	if l, ok := lookupValue(body, "deploy.locations").([]any); ok {
		for _, v := range l {
			locations = append(locations, toInt(v))
		}
	}
	dedicated, _ := boolean(lookupValue(body, "deploy.dedicated_ip"))
	type span struct{ lo, hi int }
	var ports []span
	if p, ok := lookupValue(body, "deploy.port_range").([]any); ok {
		for _, v := range p {
			m := portRange.FindStringSubmatch(text(v))
			if m == nil {
				return nil, displayError("DisplayException", fmt.Sprintf("The mapping provided for %s was invalid and could not be processed.", text(v)))
			}
			lo, _ := strconv.Atoi(m[1])
			hi := lo
			if m[2] != "" {
				hi, _ = strconv.Atoi(m[2])
			}
			ports = append(ports, span{lo, hi})
		}
	}
	viable := map[int]bool{}
	for _, n := range sorted(s.nodes) {
		if !n.Private && (len(locations) == 0 || slices.Contains(locations, n.LocationID)) && s.fits(n, memory, disk) {
			viable[n.ID] = true
		}
	}
	if len(viable) == 0 {
		return nil, displayError("NoViableNodeException", "No nodes satisfying the requirements specified for automatic deployment could be found.")
	}
	usedIP := map[string]bool{}
	for _, a := range s.allocs {
		if a.ServerID != 0 {
			usedIP[fmt.Sprint(a.NodeID, a.IP)] = true
		}
	}
	for _, a := range sorted(s.allocs) {
		inRange := len(ports) == 0
		for _, p := range ports {
			inRange = inRange || (a.Port >= p.lo && a.Port <= p.hi)
		}
		if viable[a.NodeID] && a.ServerID == 0 && inRange && !(dedicated && usedIP[fmt.Sprint(a.NodeID, a.IP)]) {
			return a, nil
		}
	}
	return nil, displayError("NoViableAllocationException", "No allocations satisfying the requirements for automatic deployment were found.")
}

// fits says whether a node has room for memory and disk more, counting
// its overallocation; the lock must be held.
func (s *Server) fits(n *Node, memory, disk int) bool {
	usedMem, usedDisk := s.nodeUsage(n.ID)
	within := func(used, capacity, over int) bool {
		return over < 0 || used <= capacity*(100+over)/100
	}
	return within(usedMem+memory, n.Memory, n.MemoryOverallocate) && within(usedDisk+disk, n.Disk, n.DiskOverallocate)
}

// nodeUsage sums the limits of the node's servers; the lock must be held.
func (s *Server) nodeUsage(node int) (memory, disk int) {
	for _, gs := range s.servers {
		if gs.NodeID == node {
			memory += gs.Limits.Memory
			disk += gs.Limits.Disk
		}
	}
	return memory, disk
}

func (s *Server) updateDetails(r *http.Request, _ *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.appServer(r)
	if err != nil {
		return 0, nil, err
	}
	if err := validate(body, []check{
		{field: "external_id", rules: "sometimes|nullable|string|between:1,191|unique", unique: s.externalIDFree(gs.ID)},
		{field: "name", rules: "required|string|min:1|max:191"},
		{field: "user", rules: "required|integer|exists", exists: s.userExists},
		{field: "description", rules: "nullable|string"},
	}); err != nil {
		return 0, nil, err
	}
	// The panel writes external_id whether or not it was sent: leaving it
	// out clears it.
	gs.ExternalID = text(body["external_id"])
	gs.OwnerID = toInt(body["user"])
	gs.Name = text(body["name"])
	gs.Description = text(body["description"])
	gs.UpdatedAt = time.Now()
	return http.StatusOK, s.appServerItem(gs, includes(r)), nil
}

func (s *Server) updateBuild(r *http.Request, _ *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.appServer(r)
	if err != nil {
		return 0, nil, err
	}
	notDefaultElsewhere := func(v any) bool {
		for _, o := range s.servers {
			if o.ID != gs.ID && o.AllocationID == toInt(v) {
				return false
			}
		}
		return true
	}
	allocationExists := func(v any) bool { _, ok := s.allocs[toInt(v)]; return ok }
	checks := []check{
		{field: "allocation", rules: "required|bail|unique|exists", unique: notDefaultElsewhere, exists: allocationExists},
		{field: "oom_disabled", rules: "sometimes|boolean"},
		{field: "limits", rules: "sometimes|array"},
	}
	limits := []struct{ name, rules string }{
		{"memory", "numeric|min:0"}, {"swap", "numeric|min:-1"}, {"io", "numeric|between:10,1000"},
		{"cpu", "numeric|min:0"}, {"threads", ""}, {"disk", "numeric|min:0"},
	}
	// The build endpoint takes the limits nested under "limits" or, as the
	// legacy form, at the top level (pterodactyl/panel#1500).
	for _, prefix := range []string{"limits.", ""} {
		for _, l := range limits {
			rules := l.rules
			switch {
			case l.name == "threads":
				rules = threadsRule
			case prefix == "":
				rules = "required_without:limits|" + rules
			default:
				rules = "required_with:limits|" + rules
			}
			checks = append(checks, check{field: prefix + l.name, rules: rules})
		}
	}
	checks = append(checks,
		check{field: "add_allocations", rules: "bail|array", attr: "allocations to add"},
		check{field: "add_allocations.*", rules: "integer", attr: "allocation to add"},
		check{field: "remove_allocations", rules: "bail|array", attr: "allocations to remove"},
		check{field: "remove_allocations.*", rules: "integer", attr: "allocation to remove"},
		check{field: "feature_limits", rules: "required|array"},
		check{field: "feature_limits.databases", rules: "present|nullable|integer|min:0", attr: "Database Limit"},
		check{field: "feature_limits.allocations", rules: "sometimes|nullable|integer|min:0", attr: "Allocation Limit"},
		check{field: "feature_limits.backups", rules: "present|nullable|integer|min:0", attr: "Backup Limit"})
	if err := validate(body, checks); err != nil {
		return 0, nil, err
	}
	ids := func(field string) []int {
		var out []int
		if a, ok := body[field].([]any); ok {
			for _, v := range a {
				out = append(out, toInt(v))
			}
		}
		return out
	}
	add, remove, def := ids("add_allocations"), ids("remove_allocations"), toInt(body["allocation"])
	if slices.Contains(remove, def) {
		return 0, nil, displayError("DisplayException", "You are attempting to delete the default allocation for this server but there is no fallback allocation to use.")
	}
	owned := func(id int) bool {
		a, ok := s.allocs[id]
		return ok && (a.ServerID == gs.ID || (slices.Contains(add, id) && a.ServerID == 0 && a.NodeID == gs.NodeID))
	}
	if def != gs.AllocationID && !owned(def) {
		return 0, nil, displayError("DisplayException", "The requested default allocation is not currently assigned to this server.")
	}
	for _, id := range add {
		if a, ok := s.allocs[id]; ok && a.ServerID == 0 && a.NodeID == gs.NodeID {
			a.ServerID = gs.ID
		}
	}
	for _, id := range remove {
		if a, ok := s.allocs[id]; ok && a.ServerID == gs.ID {
			a.ServerID = 0
		}
	}
	src := body
	if l, ok := body["limits"].(map[string]any); ok && len(l) > 0 {
		src = l
	}
	threads := gs.Limits.Threads
	if v, ok := src["threads"]; ok {
		threads = text(v)
	}
	gs.Limits = Limits{Memory: toInt(src["memory"]), Swap: toInt(src["swap"]), Disk: toInt(src["disk"]),
		IO: toInt(src["io"]), CPU: toInt(src["cpu"]), Threads: threads, OOMDisabled: gs.Limits.OOMDisabled}
	if v, ok := boolean(body["oom_disabled"]); ok {
		gs.Limits.OOMDisabled = v
	}
	gs.FeatureLimits = FeatureLimits{Databases: toInt(lookupValue(body, "feature_limits.databases")),
		Allocations: toInt(lookupValue(body, "feature_limits.allocations")),
		Backups:     toInt(lookupValue(body, "feature_limits.backups"))}
	gs.AllocationID = def
	gs.UpdatedAt = time.Now()
	return http.StatusOK, s.appServerItem(gs, includes(r)), nil
}

func (s *Server) updateStartup(r *http.Request, _ *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.appServer(r)
	if err != nil {
		return 0, nil, err
	}
	if err := validate(body, []check{
		{field: "startup", rules: "sometimes|string"},
		{field: "environment", rules: "present|array"},
		{field: "egg", rules: "required|exists", exists: s.eggExists},
		{field: "image", rules: "sometimes|string|max:191"},
		{field: "skip_scripts", rules: "present|boolean"},
	}); err != nil {
		return 0, nil, err
	}
	egg := s.eggs[toInt(body["egg"])]
	envIn, _ := body["environment"].(map[string]any)
	env, err := s.validateVariables(egg, envIn)
	if err != nil {
		return 0, nil, err
	}
	gs.EggID = egg.ID
	gs.Environment = env
	if v, ok := body["startup"].(string); ok {
		gs.Startup = v
	}
	if v, ok := body["image"].(string); ok {
		gs.Image = v
	}
	gs.SkipScripts, _ = boolean(body["skip_scripts"])
	gs.UpdatedAt = time.Now()
	return http.StatusOK, s.appServerItem(gs, includes(r)), nil
}

func (s *Server) reinstallServer(r *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.appServer(r)
	if err != nil {
		return 0, nil, err
	}
	s.install(gs, c.taskError, false, true)
	return http.StatusNoContent, nil, nil
}

// suspend returns the handler of /suspend (on) or /unsuspend. Suspending
// makes Wings stop the server at once.
func (s *Server) suspend(on bool) handler {
	return func(r *http.Request, _ *call) (int, any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		gs, err := s.appServer(r)
		if err != nil {
			return 0, nil, err
		}
		switch {
		case on && gs.Status != StatusSuspended:
			gs.Status = StatusSuspended
			s.power(gs, "kill", "")
		case !on && gs.Status == StatusSuspended:
			gs.Status = ""
		}
		gs.UpdatedAt = time.Now()
		return http.StatusNoContent, nil, nil
	}
}

// deleteServer deletes a server with its backups, frees its allocations
// and closes its websockets. Without a Wings to fail, a plain and a forced
// delete are the same.
func (s *Server) deleteServer(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.appServer(r)
	if err != nil {
		return 0, nil, err
	}
	gs.deleted = true
	gs.stopTimers()
	for _, b := range gs.backups {
		if b.timer != nil {
			b.timer.Stop()
		}
	}
	for _, a := range s.allocs {
		if a.ServerID == gs.ID {
			a.ServerID = 0
		}
	}
	for c := range gs.conns {
		c.closeWith("server deleted")
	}
	delete(s.servers, gs.ID)
	return http.StatusNoContent, nil, nil
}

func (s *Server) getEgg(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nest, _ := strconv.Atoi(r.PathValue("nest"))
	id, _ := strconv.Atoi(r.PathValue("egg"))
	egg, ok := s.eggs[id]
	if !ok || egg.NestID != nest {
		return 0, nil, notFound()
	}
	attrs := map[string]any{
		"id": egg.ID, "uuid": egg.UUID, "name": egg.Name, "nest": egg.NestID, "author": egg.Author,
		"description": egg.Description, "docker_image": egg.defaultImage(), "docker_images": egg.DockerImages,
		"config": map[string]any{"files": map[string]any{}, "startup": map[string]any{"done": "Done"}, "stop": "stop",
			"logs": map[string]any{}, "file_denylist": []string{}, "extends": nil},
		"startup": egg.Startup,
		"script": map[string]any{"privileged": true, "install": "#!/bin/bash\n# install script", "entry": "bash",
			"container": "ghcr.io/pterodactyl/installers:debian", "extends": nil},
		"created_at": timestamp(s.epoch), "updated_at": timestamp(s.epoch),
	}
	if slices.Contains(includes(r), "variables") {
		var items []map[string]any
		for _, v := range egg.Variables {
			items = append(items, item("egg_variable", s.eggVariableAttrs(egg, v)))
		}
		attrs["relationships"] = map[string]any{"variables": list(items)}
	}
	return http.StatusOK, item("egg", attrs), nil
}

func (s *Server) listNodes(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	for _, n := range sorted(s.nodes) {
		memory, disk := s.nodeUsage(n.ID)
		items = append(items, item("node", map[string]any{
			"id": n.ID, "uuid": n.UUID, "public": !n.Private, "name": n.Name, "description": nil,
			"location_id": n.LocationID, "fqdn": n.FQDN, "scheme": "https", "behind_proxy": false,
			"maintenance_mode": false, "memory": n.Memory, "memory_overallocate": n.MemoryOverallocate,
			"disk": n.Disk, "disk_overallocate": n.DiskOverallocate, "upload_size": 100,
			"daemon_listen": 8080, "daemon_sftp": 2022, "daemon_base": "/var/lib/pterodactyl/volumes",
			"created_at": timestamp(s.epoch), "updated_at": timestamp(s.epoch),
			"allocated_resources": map[string]any{"memory": memory, "disk": disk},
		}))
	}
	return http.StatusOK, paged(r, items, 50, 100), nil
}

func (s *Server) listAllocations(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	node, err := strconv.Atoi(r.PathValue("node"))
	if _, ok := s.nodes[node]; !ok || err != nil {
		return 0, nil, notFound()
	}
	q := r.URL.Query()
	var items []map[string]any
	for _, a := range sorted(s.allocs) {
		if a.NodeID != node || !partial(r, "ip", a.IP) || !partial(r, "ip_alias", a.Alias) ||
			(q.Get("filter[port]") != "" && q.Get("filter[port]") != strconv.Itoa(a.Port)) {
			continue
		}
		// filter[server_id]: a server's id, or anything else for the free ones.
		if q.Has("filter[server_id]") {
			want, err := strconv.Atoi(q.Get("filter[server_id]"))
			if err != nil || want < 0 {
				want = 0
			}
			if a.ServerID != want {
				continue
			}
		}
		items = append(items, appAllocationItem(a))
	}
	return http.StatusOK, paged(r, items, 50, 100), nil
}

func (s *Server) listLocations(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	for _, l := range sorted(s.locations) {
		items = append(items, item("location", map[string]any{"id": l.ID, "short": l.Short, "long": l.Long,
			"created_at": timestamp(s.epoch), "updated_at": timestamp(s.epoch)}))
	}
	return http.StatusOK, paged(r, items, 50, 100), nil
}

func (s *Server) userItem(u *User) map[string]any {
	return item("user", map[string]any{"id": u.ID, "external_id": orNull(u.ExternalID), "uuid": u.UUID,
		"username": u.Username, "email": u.Email, "first_name": u.FirstName, "last_name": u.LastName,
		"language": "en", "root_admin": u.RootAdmin, "2fa": false,
		"created_at": timestamp(s.epoch), "updated_at": timestamp(s.epoch)})
}

func (s *Server) listUsers(r *http.Request, _ *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	for _, u := range sorted(s.users) {
		if partial(r, "email", u.Email) && partial(r, "uuid", u.UUID) && partial(r, "username", u.Username) &&
			partial(r, "external_id", u.ExternalID) {
			items = append(items, s.userItem(u))
		}
	}
	return http.StatusOK, paged(r, items, 50, 100), nil
}

func (s *Server) createUser(r *http.Request, _ *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	free := func(field func(*User) string) func(any) bool {
		return func(v any) bool {
			for _, u := range s.users {
				if strings.EqualFold(field(u), text(v)) {
					return false
				}
			}
			return true
		}
	}
	if err := validate(body, []check{
		{field: "external_id", rules: "sometimes|nullable|string|max:191|unique", unique: free(func(u *User) string { return u.ExternalID })},
		{field: "email", rules: "required|email|between:1,191|unique", unique: free(func(u *User) string { return u.Email })},
		{field: "username", rules: "required|between:1,191|unique", unique: free(func(u *User) string { return u.Username })},
		{field: "first_name", rules: "required|string|between:1,191"},
		{field: "last_name", rules: "required|string|between:1,191"},
		{field: "password", rules: "sometimes|nullable|string"},
		{field: "root_admin", rules: "boolean"},
		{field: "language", rules: "string"},
	}); err != nil {
		return 0, nil, err
	}
	admin, _ := boolean(body["root_admin"])
	u := &User{ID: nextID(s.users), ExternalID: text(body["external_id"]), UUID: uuid.NewString(),
		Username: text(body["username"]), Email: text(body["email"]), FirstName: text(body["first_name"]),
		LastName: text(body["last_name"]), RootAdmin: admin}
	s.users[u.ID] = u
	out := s.userItem(u)
	out["meta"] = map[string]any{"resource": fmt.Sprintf("%s/api/application/users/%d", baseURL(r, s.cfg.BaseURL), u.ID)}
	return http.StatusCreated, out, nil
}
