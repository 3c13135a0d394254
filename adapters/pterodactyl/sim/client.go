package sim

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// clientServer finds the server a client API path names, by its
// 8-character identifier or its uuid, and checks that the key's user owns
// it or is a root admin, as the panel's route binding and
// AuthenticateServerAccess do.
func (s *Server) clientServer(r *http.Request, u *User) (*serverState, error) {
	id := r.PathValue("server")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, gs := range s.servers {
		if (len(id) == 8 && gs.Identifier == id) || gs.UUID == id {
			if gs.OwnerID != u.ID && !u.RootAdmin {
				return nil, &apiError{status: http.StatusNotFound, code: "NotFoundHttpException",
					detail: "The requested resource does not exist on this server."}
			}
			return gs, nil
		}
	}
	return nil, notFound()
}

// checkState refuses a client call on a server that is not in a normal
// status, as AuthenticateServerAccess does: viewing it always works, its
// resources also while suspended, and a root admin may open the websocket
// of an installing or restoring server. A server whose reinstall failed
// passes Server::validateCurrentState, as a normal one does.
func (s *Server) checkState(gs *serverState, route string, u *User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case gs.deleted:
		return notFound()
	case gs.Status == "", gs.Status == StatusReinstallFailed, route == "view":
		return nil
	case gs.Status == StatusSuspended:
		if route == "resources" {
			return nil
		}
	case route == "websocket" && u.RootAdmin:
		return nil
	}
	return stateConflict(gs.Status)
}

// stateConflict is the panel's ServerStateConflictException.
func stateConflict(status string) *apiError {
	msg := "This server is currently in an unsupported state, please try again later."
	switch status {
	case StatusSuspended:
		msg = "This server is currently suspended and the functionality requested is unavailable."
	case StatusInstalling, StatusInstallFailed:
		msg = "This server has not yet completed its installation process, please try again later."
	case StatusRestoringBackup:
		msg = "This server is currently restoring from a backup, please try again later."
	}
	return &apiError{status: http.StatusConflict, code: "ServerStateConflictException", detail: msg}
}

// permissions are the websocket permissions of a user on a server: "*"
// for its owner or an admin, and the admin.websocket.* ones for an admin.
func permissions(gs *serverState, u *User) []string {
	var p []string
	if gs.OwnerID == u.ID || u.RootAdmin {
		p = append(p, "*")
	}
	if u.RootAdmin {
		p = append(p, "admin.websocket.errors", "admin.websocket.install", "admin.websocket.transfer")
	}
	return p
}

// invocation is the startup command with the variables filled in, as the
// panel's StartupCommandService builds it; the lock must be held.
func (s *Server) invocation(gs *serverState) string {
	pairs := []string{"{{SERVER_MEMORY}}", strconv.Itoa(gs.Limits.Memory)}
	if a, ok := s.allocs[gs.AllocationID]; ok {
		pairs = append(pairs, "{{SERVER_IP}}", a.IP, "{{SERVER_PORT}}", strconv.Itoa(a.Port))
	}
	if egg, ok := s.eggs[gs.EggID]; ok {
		for _, v := range egg.Variables {
			value := "[hidden]"
			if v.UserViewable {
				value = gs.Environment[v.EnvVariable]
			}
			pairs = append(pairs, "{{"+v.EnvVariable+"}}", value)
		}
	}
	return strings.NewReplacer(pairs...).Replace(gs.Startup)
}

// clientVariableItem is an egg variable as the client API shows it.
func clientVariableItem(gs *serverState, v EggVariable) map[string]any {
	return item("egg_variable", map[string]any{"name": v.Name, "description": v.Description,
		"env_variable": v.EnvVariable, "default_value": v.DefaultValue, "server_value": gs.Environment[v.EnvVariable],
		"is_editable": v.UserEditable, "rules": v.Rules})
}

// viewableVariables are the variables a user may see; the lock must be
// held.
func (s *Server) viewableVariables(gs *serverState) []EggVariable {
	var out []EggVariable
	if egg, ok := s.eggs[gs.EggID]; ok {
		for _, v := range egg.Variables {
			if v.UserViewable {
				out = append(out, v)
			}
		}
	}
	return out
}

// clientAllocationItems are the server's allocations as the client API
// shows them; the lock must be held.
func (s *Server) clientAllocationItems(gs *serverState) []map[string]any {
	var items []map[string]any
	for _, a := range s.serverAllocations(gs) {
		items = append(items, item("allocation", map[string]any{"id": a.ID, "ip": a.IP, "ip_alias": orNull(a.Alias),
			"port": a.Port, "notes": orNull(a.Notes), "is_default": a.ID == gs.AllocationID}))
	}
	return items
}

func (s *Server) clientView(_ *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := c.srv
	node, egg := s.nodes[gs.NodeID], s.eggs[gs.EggID]
	var variables []map[string]any
	for _, v := range s.viewableVariables(gs) {
		variables = append(variables, clientVariableItem(gs, v))
	}
	attrs := map[string]any{
		"server_owner": gs.OwnerID == c.user.ID, "identifier": gs.Identifier, "internal_id": gs.ID, "uuid": gs.UUID,
		"name": gs.Name, "node": node.Name, "is_node_under_maintenance": false,
		"sftp_details": map[string]any{"ip": node.FQDN, "port": 2022},
		"description":  gs.Description, "limits": limitsJSON(gs.Limits), "invocation": s.invocation(gs),
		"docker_image": gs.Image, "egg_features": slices.Clone(egg.Features),
		"feature_limits": featureLimitsJSON(gs.FeatureLimits), "status": orNull(gs.Status),
		"is_suspended":    gs.Status == StatusSuspended,
		"is_installing":   gs.Status == StatusInstalling || gs.Status == StatusInstallFailed,
		"is_transferring": false,
		"relationships": map[string]any{"allocations": list(s.clientAllocationItems(gs)),
			"variables": list(variables)},
	}
	out := item("server", attrs)
	out["meta"] = map[string]any{"is_server_owner": gs.OwnerID == c.user.ID, "user_permissions": permissions(gs, c.user)}
	return http.StatusOK, out, nil
}

func (s *Server) clientResources(_ *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats(c.srv)
	return http.StatusOK, item("stats", map[string]any{
		"current_state": st.State, "is_suspended": c.srv.Status == StatusSuspended,
		"resources": map[string]any{"memory_bytes": st.Memory, "cpu_absolute": st.CPU, "disk_bytes": st.Disk,
			"network_rx_bytes": st.Network.Rx, "network_tx_bytes": st.Network.Tx, "uptime": st.Uptime},
	}), nil
}

// clientPower sends a power signal. Wings runs it in the background, so
// the call succeeds even when Wings then ignores it (start while running,
// a second action while one holds the power lock).
func (s *Server) clientPower(r *http.Request, c *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	if err := validate(body, []check{{field: "signal", rules: "required|string|in:start,stop,restart,kill"}}); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.power(c.srv, text(body["signal"]), c.taskError)
	return http.StatusNoContent, nil, nil
}

func (s *Server) clientCommand(r *http.Request, c *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	if err := validate(body, []check{{field: "command", rules: "required|string|min:1"}}); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.srv.State == StateOffline {
		// Wings answers 502 for a stopped server and the panel says why.
		return 0, nil, &apiError{status: http.StatusBadGateway, code: "HttpException",
			detail: "Server must be online in order to send commands."}
	}
	s.command(c.srv, text(body["command"]))
	return http.StatusNoContent, nil, nil
}

func (s *Server) clientWebsocket(r *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	token, err := s.websocketToken(r, c.srv, c.user)
	if err != nil {
		return 0, nil, err
	}
	socket := strings.Replace(baseURL(r, s.cfg.BaseURL), "http", "ws", 1) + "/api/servers/" + c.srv.UUID + "/ws"
	return http.StatusOK, map[string]any{"data": map[string]any{"token": token, "socket": socket}}, nil
}

// startupMeta is the meta the startup endpoints add; the lock must be held.
func (s *Server) startupMeta(gs *serverState) map[string]any {
	images := map[string]string{}
	if egg, ok := s.eggs[gs.EggID]; ok {
		images = maps.Clone(egg.DockerImages)
	}
	return map[string]any{"startup_command": s.invocation(gs), "docker_images": images, "raw_startup_command": gs.Startup}
}

func (s *Server) clientStartup(_ *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	for _, v := range s.viewableVariables(c.srv) {
		items = append(items, clientVariableItem(c.srv, v))
	}
	out := list(items)
	out["meta"] = s.startupMeta(c.srv)
	return http.StatusOK, out, nil
}

// clientStartupVariable sets one variable the user may edit, validated by
// the egg's rules for it.
func (s *Server) clientStartupVariable(r *http.Request, c *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	if err := validate(body, []check{{field: "key", rules: "required|string"}, {field: "value", rules: "present"}}); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := c.srv
	egg := s.eggs[gs.EggID]
	v, ok := egg.variable(text(body["key"]))
	switch {
	case !ok || !v.UserViewable:
		return 0, nil, badRequest("The environment variable you are trying to edit does not exist.")
	case !v.UserEditable:
		return 0, nil, badRequest("The environment variable you are trying to edit is read-only.")
	}
	if err := validate(body, []check{{field: "value", rules: v.Rules}}); err != nil {
		return 0, nil, err
	}
	gs.Environment[v.EnvVariable] = text(body["value"])
	out := clientVariableItem(gs, v)
	meta := s.startupMeta(gs)
	delete(meta, "docker_images")
	out["meta"] = meta
	return http.StatusOK, out, nil
}

func (s *Server) clientAllocations(_ *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, list(s.clientAllocationItems(c.srv)), nil
}

func (s *Server) clientReinstall(_ *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.install(c.srv, c.taskError, false, true)
	return http.StatusAccepted, []any{}, nil
}
