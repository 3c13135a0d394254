package pterodactyl

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// Limits are a server's resource limits: Memory, Swap and Disk in MiB
// (Swap -1 for unlimited, 0 for none), IO a block-IO weight from 10 to
// 1000, CPU in percent of one core (0 for unlimited). Threads pins the
// server to CPUs ("0-1,3"), empty for none.
type Limits struct {
	Memory, Swap, Disk, IO, CPU int
	Threads                     string
	OOMDisabled                 bool
}

// FeatureLimits cap how many databases, allocations and backups a server's
// owner may create.
type FeatureLimits struct {
	Databases, Allocations, Backups int
}

// Container is how Wings runs a server. Environment holds the egg's
// variables and the panel's own (STARTUP, P_SERVER_UUID, ...).
type Container struct {
	StartupCommand, Image string
	Installed             bool
	Environment           map[string]string
}

// Server statuses as the panel reports them; "" (null) is a normal
// server. The client API refuses calls on a server that is installing or
// whose install failed with the same 409; one whose reinstall failed
// (panels from v1.11; older ones say install_failed) is served.
const (
	StatusInstalling      = "installing"
	StatusInstallFailed   = "install_failed"
	StatusReinstallFailed = "reinstall_failed"
	StatusSuspended       = "suspended"
	StatusRestoringBackup = "restoring_backup"
)

// Server is a server as the application API shows it.
type Server struct {
	ID                                              int
	ExternalID, UUID, Identifier, Name, Description string
	// Status is "" or one of the Status constants.
	Status        string
	Suspended     bool
	Limits        Limits
	FeatureLimits FeatureLimits
	// User, Node, Allocation (the default one), Nest and Egg are ids.
	User, Node, Allocation, Nest, Egg int
	Container                         Container
}

// Deploy asks the panel to pick the node and allocation: a free one in one
// of Locations (any when empty), on an IP no other server uses when
// DedicatedIP, with a port in PortRange ("25565" or "25565-25570"; any when
// empty).
type Deploy struct {
	Locations   []int
	DedicatedIP bool
	PortRange   []string
}

// NewServer is what CreateServer needs. Environment must give every
// variable of the egg a value its rules accept: the panel validates them
// all. A zero Limits.IO is sent as the panel's default of 500.
type NewServer struct {
	Name, ExternalID, Description string
	User, Egg                     int
	DockerImage, Startup          string
	Environment                   map[string]string
	Limits                        Limits
	FeatureLimits                 FeatureLimits
	// Allocation is the id of the default allocation; it is ignored when
	// Deploy is set.
	Allocation int
	// Deploy, when set, lets the panel choose the allocation.
	Deploy            *Deploy
	StartOnCompletion bool
}

// limitsJSON are limits on the wire as requests send them; oom_disabled
// goes at the top level of a request.
type limitsJSON struct {
	Memory  int    `json:"memory"`
	Swap    int    `json:"swap"`
	Disk    int    `json:"disk"`
	IO      int    `json:"io"`
	CPU     int    `json:"cpu"`
	Threads string `json:"threads"` // "" arrives as null: no pinning
}

// defaultIO is the panel's default block-IO weight; 0 is not a valid one.
const defaultIO = 500

func toLimitsJSON(l Limits) limitsJSON {
	weight := l.IO
	if weight == 0 {
		weight = defaultIO
	}
	return limitsJSON{Memory: l.Memory, Swap: l.Swap, Disk: l.Disk, IO: weight, CPU: l.CPU, Threads: l.Threads}
}

type featureLimitsJSON struct {
	Databases   int `json:"databases"`
	Allocations int `json:"allocations"`
	Backups     int `json:"backups"`
}

func toFeatureLimitsJSON(f FeatureLimits) featureLimitsJSON {
	return featureLimitsJSON(f)
}

// serverJSON is the application API's server item.
type serverJSON struct {
	ID          int    `json:"id"`
	ExternalID  string `json:"external_id"`
	UUID        string `json:"uuid"`
	Identifier  string `json:"identifier"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	Suspended   bool   `json:"suspended"`
	Limits      struct {
		limitsJSON
		OOMDisabled bool `json:"oom_disabled"`
	} `json:"limits"`
	FeatureLimits featureLimitsJSON `json:"feature_limits"`
	User          int               `json:"user"`
	Node          int               `json:"node"`
	Allocation    int               `json:"allocation"`
	Nest          int               `json:"nest"`
	Egg           int               `json:"egg"`
	Container     struct {
		StartupCommand string         `json:"startup_command"`
		Image          string         `json:"image"`
		Installed      flexBool       `json:"installed"` // 1 or 0
		Environment    map[string]any `json:"environment"`
	} `json:"container"`
}

func (s serverJSON) server() Server {
	env := make(map[string]string, len(s.Container.Environment))
	for k, v := range s.Container.Environment {
		env[k] = text(v)
	}
	l, f := s.Limits, s.FeatureLimits
	return Server{
		ID: s.ID, ExternalID: s.ExternalID, UUID: s.UUID, Identifier: s.Identifier, Name: s.Name,
		Description: s.Description, Status: s.Status, Suspended: s.Suspended,
		Limits: Limits{Memory: l.Memory, Swap: l.Swap, Disk: l.Disk, IO: l.IO, CPU: l.CPU, Threads: l.Threads,
			OOMDisabled: l.OOMDisabled},
		FeatureLimits: FeatureLimits(f),
		User:          s.User, Node: s.Node, Allocation: s.Allocation, Nest: s.Nest, Egg: s.Egg,
		Container: Container{StartupCommand: s.Container.StartupCommand, Image: s.Container.Image,
			Installed: bool(s.Container.Installed), Environment: env},
	}
}

// serverCall sends a request whose answer is a server item.
func (c *Client) serverCall(ctx context.Context, op, method, path string, body any) (Server, error) {
	var out item[serverJSON]
	if err := c.appCall(ctx, op, method, path, body, &out); err != nil {
		return Server{}, err
	}
	return out.Attributes.server(), nil
}

// environment is an environment as requests send it: the panel wants the
// key present, so nil goes as {}.
func environment(env map[string]string) map[string]string {
	if env == nil {
		return map[string]string{}
	}
	return env
}

// CreateServer creates a server; the panel then installs it (Status
// "installing"). A retry after a lost answer may create a second server:
// set ExternalID and look it up with ServerByExternalID first.
func (c *Client) CreateServer(ctx context.Context, s NewServer) (Server, error) {
	type allocation struct {
		Default int `json:"default"`
	}
	type deploy struct {
		Locations   []int    `json:"locations"`
		DedicatedIP bool     `json:"dedicated_ip"`
		PortRange   []string `json:"port_range"`
	}
	body := struct {
		Name              string            `json:"name"`
		ExternalID        string            `json:"external_id,omitempty"`
		Description       string            `json:"description,omitempty"`
		User              int               `json:"user"`
		Egg               int               `json:"egg"`
		DockerImage       string            `json:"docker_image"`
		Startup           string            `json:"startup"`
		Environment       map[string]string `json:"environment"`
		Limits            limitsJSON        `json:"limits"`
		OOMDisabled       bool              `json:"oom_disabled"` // left out, the panel disables the OOM killer
		FeatureLimits     featureLimitsJSON `json:"feature_limits"`
		Allocation        *allocation       `json:"allocation,omitempty"`
		Deploy            *deploy           `json:"deploy,omitempty"`
		StartOnCompletion bool              `json:"start_on_completion"`
	}{
		Name: s.Name, ExternalID: s.ExternalID, Description: s.Description, User: s.User, Egg: s.Egg,
		DockerImage: s.DockerImage, Startup: s.Startup, Environment: environment(s.Environment),
		Limits: toLimitsJSON(s.Limits), OOMDisabled: s.Limits.OOMDisabled,
		FeatureLimits: toFeatureLimitsJSON(s.FeatureLimits), StartOnCompletion: s.StartOnCompletion,
	}
	if d := s.Deploy; d != nil {
		// The panel wants both lists present, if empty.
		body.Deploy = &deploy{Locations: append([]int{}, d.Locations...), DedicatedIP: d.DedicatedIP,
			PortRange: append([]string{}, d.PortRange...)}
	} else {
		body.Allocation = &allocation{Default: s.Allocation}
	}
	return c.serverCall(ctx, "servers.create", http.MethodPost, "/servers", body)
}

// Server reads a server by its numeric id.
func (c *Client) Server(ctx context.Context, id int) (Server, error) {
	return c.serverCall(ctx, "servers.get", http.MethodGet, serverPath(id, ""), nil)
}

// Servers lists every server of the panel, reading every page.
func (c *Client) Servers(ctx context.Context) ([]Server, error) {
	send := func(ctx context.Context, path string, out any) error {
		return c.appCall(ctx, "servers.list", http.MethodGet, path, nil, out)
	}
	raw, err := allPages[serverJSON](ctx, send, "/servers")
	if err != nil {
		return nil, err
	}
	servers := make([]Server, 0, len(raw))
	for _, s := range raw {
		servers = append(servers, s.server())
	}
	return servers, nil
}

// ServerByExternalID reads the server with the given external id; the
// error wraps ErrNotFound when there is none.
func (c *Client) ServerByExternalID(ctx context.Context, externalID string) (Server, error) {
	if externalID == "" {
		// The panel would answer a route 404 after a round trip.
		return Server{}, &failure.Error{Class: failure.Permanent, Provider: Provider, Op: "servers.external",
			Message: "no external id given", Err: ErrNotFound}
	}
	return c.serverCall(ctx, "servers.external", http.MethodGet, "/servers/external/"+url.PathEscape(externalID), nil)
}

// ServerByIdentifier reads the server with the given 8-character
// identifier (or uuid), through the application API's filter on it; the
// error wraps ErrNotFound when there is none.
func (c *Client) ServerByIdentifier(ctx context.Context, identifier string) (Server, error) {
	const op = "servers.identifier"
	if identifier != "" {
		filter := "filter[uuidShort]"
		if len(identifier) > 8 {
			filter = "filter[uuid]"
		}
		q := url.Values{filter: {identifier}, "per_page": {strconv.Itoa(perPage)}}
		var out list[serverJSON]
		if err := c.appCall(ctx, op, http.MethodGet, "/servers?"+q.Encode(), nil, &out); err != nil {
			return Server{}, err
		}
		// The filter matches a part of the field: the exact one is picked.
		for _, it := range out.Data {
			if s := it.Attributes; s.Identifier == identifier || s.UUID == identifier {
				return s.server(), nil
			}
		}
	}
	return Server{}, &failure.Error{Class: failure.Permanent, Provider: Provider, Op: op,
		Message: fmt.Sprintf("no server with identifier %q", identifier), Err: ErrNotFound}
}

// Build is a server's complete build configuration: every field is sent,
// so start from the server's current values. AddAllocations are free
// allocations on the server's node to assign; RemoveAllocations are
// assigned ones to free (not the default).
type Build struct {
	Allocation                        int
	Limits                            Limits
	FeatureLimits                     FeatureLimits
	AddAllocations, RemoveAllocations []int
}

// UpdateBuild changes a server's limits and allocations. Wings applies new
// limits to a running server without a restart.
func (c *Client) UpdateBuild(ctx context.Context, id int, b Build) (Server, error) {
	body := struct {
		Allocation        int               `json:"allocation"`
		Limits            limitsJSON        `json:"limits"`
		OOMDisabled       bool              `json:"oom_disabled"`
		FeatureLimits     featureLimitsJSON `json:"feature_limits"`
		AddAllocations    []int             `json:"add_allocations,omitempty"`
		RemoveAllocations []int             `json:"remove_allocations,omitempty"`
	}{
		Allocation: b.Allocation, Limits: toLimitsJSON(b.Limits), OOMDisabled: b.Limits.OOMDisabled,
		FeatureLimits: toFeatureLimitsJSON(b.FeatureLimits), AddAllocations: b.AddAllocations,
		RemoveAllocations: b.RemoveAllocations,
	}
	return c.serverCall(ctx, "servers.build", http.MethodPatch, serverPath(id, "/build"), body)
}

// Startup is a server's startup configuration. Egg is required; an empty
// Startup or Image keeps the current one. Environment must give every
// variable of the egg a valid value, as for NewServer. SkipScripts skips
// the egg's install script on later reinstalls.
type Startup struct {
	Startup     string
	Environment map[string]string
	Egg         int
	Image       string
	SkipScripts bool
}

// UpdateStartup changes a server's egg, startup command, image and
// variables. It does not reinstall the server: call Reinstall for a new egg.
func (c *Client) UpdateStartup(ctx context.Context, id int, s Startup) (Server, error) {
	body := struct {
		// The panel refuses null for startup and image, and "" arrives as
		// null: an empty one is left out.
		Startup     string            `json:"startup,omitempty"`
		Environment map[string]string `json:"environment"`
		Egg         int               `json:"egg"`
		Image       string            `json:"image,omitempty"`
		SkipScripts bool              `json:"skip_scripts"`
	}{Startup: s.Startup, Environment: environment(s.Environment), Egg: s.Egg, Image: s.Image, SkipScripts: s.SkipScripts}
	return c.serverCall(ctx, "servers.startup", http.MethodPatch, serverPath(id, "/startup"), body)
}

// Reinstall runs the egg's install script again; the server stops and is
// "installing" until it ends.
func (c *Client) Reinstall(ctx context.Context, id int) error {
	return c.appCall(ctx, "servers.reinstall", http.MethodPost, serverPath(id, "/reinstall"), nil, nil)
}

// Suspend suspends a server; Wings stops it at once.
func (c *Client) Suspend(ctx context.Context, id int) error {
	return c.appCall(ctx, "servers.suspend", http.MethodPost, serverPath(id, "/suspend"), nil, nil)
}

// Unsuspend lifts a suspension; the server stays stopped.
func (c *Client) Unsuspend(ctx context.Context, id int) error {
	return c.appCall(ctx, "servers.unsuspend", http.MethodPost, serverPath(id, "/unsuspend"), nil, nil)
}

// DeleteServer deletes a server with its files and backups. With force the
// panel deletes it even when Wings cannot be reached. A server that is
// already gone gives an error wrapping ErrNotFound; callers decide whether
// that counts as done.
func (c *Client) DeleteServer(ctx context.Context, id int, force bool) error {
	op, path := "servers.delete", serverPath(id, "")
	if force {
		op, path = "servers.forcedelete", serverPath(id, "/force")
	}
	return c.appCall(ctx, op, http.MethodDelete, path, nil, nil)
}

func serverPath(id int, rest string) string { return fmt.Sprintf("/servers/%d%s", id, rest) }

// Variable is a startup variable of an egg. ServerValue is a server's
// value: empty on Egg, set on the client API's variables. The client API
// shows only variables users may view, so UserViewable is always true
// there.
type Variable struct {
	Name, Description, EnvVariable, DefaultValue, ServerValue string
	UserViewable, UserEditable                                bool
	// Rules are the Laravel validation rules of the value.
	Rules string
}

// Egg is a server type of a nest. DockerImage is its default image;
// DockerImages maps display names to the images it allows.
type Egg struct {
	ID, Nest                   int
	Name, DockerImage, Startup string
	DockerImages               map[string]string
	Variables                  []Variable
}

// variableJSON is an egg variable as either API shows it: the application
// API says user_viewable and user_editable, the client API is_editable.
type variableJSON struct {
	Name         string `json:"name"`
	Description  string `json:"description"`
	EnvVariable  string `json:"env_variable"`
	DefaultValue string `json:"default_value"`
	ServerValue  string `json:"server_value"`
	UserViewable bool   `json:"user_viewable"`
	UserEditable bool   `json:"user_editable"`
	IsEditable   bool   `json:"is_editable"`
	Rules        string `json:"rules"`
}

func (v variableJSON) variable() Variable {
	return Variable{Name: v.Name, Description: v.Description, EnvVariable: v.EnvVariable, DefaultValue: v.DefaultValue,
		ServerValue: v.ServerValue, UserViewable: v.UserViewable, UserEditable: v.UserEditable, Rules: v.Rules}
}

// Egg reads an egg of a nest with its variables.
func (c *Client) Egg(ctx context.Context, nest, egg int) (Egg, error) {
	var out item[struct {
		ID            int               `json:"id"`
		Nest          int               `json:"nest"`
		Name          string            `json:"name"`
		DockerImage   string            `json:"docker_image"`
		DockerImages  map[string]string `json:"docker_images"`
		Startup       string            `json:"startup"`
		Relationships struct {
			Variables list[variableJSON] `json:"variables"`
		} `json:"relationships"`
	}]
	err := c.appCall(ctx, "eggs.get", http.MethodGet, fmt.Sprintf("/nests/%d/eggs/%d?include=variables", nest, egg), nil, &out)
	if err != nil {
		return Egg{}, err
	}
	a := out.Attributes
	e := Egg{ID: a.ID, Nest: a.Nest, Name: a.Name, DockerImage: a.DockerImage, Startup: a.Startup, DockerImages: a.DockerImages}
	for _, v := range a.Relationships.Variables.Data {
		e.Variables = append(e.Variables, v.Attributes.variable())
	}
	return e, nil
}
