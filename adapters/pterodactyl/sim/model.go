package sim

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Location is a panel location that nodes belong to.
type Location struct {
	ID    int    `json:"id"`
	Short string `json:"short"`
	Long  string `json:"long"`
}

// Node is a Wings node.
type Node struct {
	ID         int    `json:"id"`
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	LocationID int    `json:"locationId"`
	FQDN       string `json:"fqdn"`
	// Memory and Disk are the node's capacity in MiB; the overallocate
	// fields are percentages on top, -1 for unlimited.
	Memory             int `json:"memory"`
	Disk               int `json:"disk"`
	MemoryOverallocate int `json:"memoryOverallocate"`
	DiskOverallocate   int `json:"diskOverallocate"`
	// Private keeps the node out of automatic deployment.
	Private bool `json:"private,omitempty"`
	// Secret signs the node's JWTs; default Config.NodeSecret.
	Secret string `json:"-"`
}

// Allocation is an IP and port on a node; ServerID is zero while it is
// free.
type Allocation struct {
	ID       int    `json:"id"`
	NodeID   int    `json:"nodeId"`
	IP       string `json:"ip"`
	Alias    string `json:"alias,omitempty"`
	Port     int    `json:"port"`
	Notes    string `json:"notes,omitempty"`
	ServerID int    `json:"serverId,omitempty"`
}

// User is a panel account.
type User struct {
	ID         int    `json:"id"`
	ExternalID string `json:"externalId,omitempty"`
	UUID       string `json:"uuid"`
	Username   string `json:"username"`
	Email      string `json:"email"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	// RootAdmin sees every server and gets the admin.websocket.*
	// permissions in its websocket tokens.
	RootAdmin bool `json:"rootAdmin,omitempty"`
}

// Egg is a server type in a nest.
type Egg struct {
	ID          int    `json:"id"`
	NestID      int    `json:"nestId"`
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Author      string `json:"author"`
	Description string `json:"description"`
	// DockerImages maps display names to images; the first by name is the
	// default.
	DockerImages map[string]string `json:"dockerImages"`
	Startup      string            `json:"startup"`
	// Features are the egg's features ("eula", "java_version").
	Features  []string      `json:"features,omitempty"`
	Variables []EggVariable `json:"variables"`
}

// EggVariable is one startup variable of an egg, validated by Rules
// (Laravel rules such as "required|string|max:20").
type EggVariable struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Description  string `json:"description"`
	EnvVariable  string `json:"envVariable"`
	DefaultValue string `json:"defaultValue"`
	UserViewable bool   `json:"userViewable"`
	UserEditable bool   `json:"userEditable"`
	Rules        string `json:"rules"`
}

// Panel is the world a Server starts with. Allocations on nodes it does
// not list are left out.
type Panel struct {
	Locations   []Location
	Nodes       []Node
	Allocations []Allocation
	Eggs        []Egg
	Users       []User
}

// Server statuses as the panel reports them; "" is a normal server. The
// client API refuses calls on a server installing or whose install failed
// alike ("has not yet completed its installation process"); one whose
// reinstall failed counts as installed and is served.
const (
	StatusInstalling      = "installing"
	StatusInstallFailed   = "install_failed"
	StatusReinstallFailed = "reinstall_failed"
	StatusSuspended       = "suspended"
	StatusRestoringBackup = "restoring_backup"
)

// Power states as Wings reports them.
const (
	StateOffline  = "offline"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
)

// GameServer is a simulated Pterodactyl server.
type GameServer struct {
	ID          int    `json:"id"`
	ExternalID  string `json:"externalId,omitempty"`
	UUID        string `json:"uuid"`
	Identifier  string `json:"identifier"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Status is the panel's status: "" or one of the Status constants.
	Status string `json:"status"`
	// State is Wings' power state, one of the State constants.
	State         string        `json:"state"`
	OwnerID       int           `json:"ownerId"`
	NodeID        int           `json:"nodeId"`
	AllocationID  int           `json:"allocationId"`
	EggID         int           `json:"eggId"`
	Limits        Limits        `json:"limits"`
	FeatureLimits FeatureLimits `json:"featureLimits"`
	Image         string        `json:"image"`
	Startup       string        `json:"startup"`
	// Environment holds the values of the egg's variables.
	Environment map[string]string `json:"environment"`
	SkipScripts bool              `json:"skipScripts,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
}

// Limits are a server's resource limits; sizes in MiB, CPU in percent.
type Limits struct {
	Memory      int    `json:"memory"`
	Swap        int    `json:"swap"`
	Disk        int    `json:"disk"`
	IO          int    `json:"io"`
	CPU         int    `json:"cpu"`
	Threads     string `json:"threads,omitempty"`
	OOMDisabled bool   `json:"oomDisabled"`
}

// FeatureLimits cap a server's databases, allocations and backups.
type FeatureLimits struct {
	Databases   int `json:"databases"`
	Allocations int `json:"allocations"`
	Backups     int `json:"backups"`
}

// Backup is a server backup. CompletedAt is zero while it runs.
type Backup struct {
	UUID         string    `json:"uuid"`
	ServerID     int       `json:"serverId"`
	Name         string    `json:"name"`
	IgnoredFiles []string  `json:"ignoredFiles"`
	Checksum     string    `json:"checksum,omitempty"`
	Bytes        int64     `json:"bytes"`
	Successful   bool      `json:"successful"`
	Locked       bool      `json:"locked"`
	CreatedAt    time.Time `json:"createdAt"`
	CompletedAt  time.Time `json:"completedAt"`
}

// serverState is a server with what Wings keeps about it.
type serverState struct {
	GameServer
	deleted bool
	// power runs the current power transition; install, the install.
	power   *time.Timer
	install []*time.Timer
	restore *time.Timer
	// busy is Wings' power lock: held while a stop or restart runs.
	busy    bool
	started time.Time // when it last became running
	ticks   int
	console []string // the recent console lines "send logs" replays
	conns   map[*wsConn]bool
	backups []*backupState
	// installRun is how the install in progress will end, nil when none
	// runs; restarting says the stop in progress is a restart's. Save
	// writes the server as these transitions would have left it.
	installRun *installRun
	restarting bool
}

type backupState struct {
	Backup
	deleted bool
	timer   *time.Timer
}

// stopTimers stops every task of the server; the lock must be held.
func (gs *serverState) stopTimers() {
	if gs.power != nil {
		gs.power.Stop()
	}
	if gs.restore != nil {
		gs.restore.Stop()
	}
	for _, t := range gs.install {
		t.Stop()
	}
	gs.install = nil
}

// DemoPanel is the panel `provisiond dev` starts with: a location, two
// nodes with free allocations, a Minecraft and a Valheim egg, an admin and
// two customers.
func DemoPanel() Panel {
	p := Panel{
		Locations: []Location{{ID: 1, Short: "de-fra", Long: "Frankfurt"}},
		Nodes: []Node{
			{ID: 1, UUID: "2c2b16f4-1f0c-4bba-9b3e-6f0c6bd0b001", Name: "fra-node-1", LocationID: 1, FQDN: "node1.fra.example.test",
				Memory: 65536, Disk: 1048576, MemoryOverallocate: 0, DiskOverallocate: 0},
			{ID: 2, UUID: "2c2b16f4-1f0c-4bba-9b3e-6f0c6bd0b002", Name: "fra-node-2", LocationID: 1, FQDN: "node2.fra.example.test",
				Memory: 32768, Disk: 524288, MemoryOverallocate: 20, DiskOverallocate: -1},
		},
		Eggs: []Egg{
			{ID: 1, NestID: 1, UUID: "a1f8b7c6-0000-4000-8000-000000000001", Name: "Paper", Author: "parker@pterodactyl.io",
				Description:  "High performance Spigot fork.",
				DockerImages: map[string]string{"Java 17": "ghcr.io/pterodactyl/yolks:java_17", "Java 21": "ghcr.io/pterodactyl/yolks:java_21"},
				Startup:      "java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}",
				Features:     []string{"eula", "java_version", "pid_limit"},
				Variables: []EggVariable{
					{ID: 1, Name: "Minecraft Version", Description: "The version of Minecraft to download.", EnvVariable: "MINECRAFT_VERSION",
						DefaultValue: "latest", UserViewable: true, UserEditable: true, Rules: "nullable|string|max:20"},
					{ID: 2, Name: "Server Jar File", Description: "The name of the server jarfile to run the server with.", EnvVariable: "SERVER_JARFILE",
						DefaultValue: "server.jar", UserViewable: true, UserEditable: true, Rules: `required|regex:/^([\w\d._-]+)(\.jar)$/`},
					{ID: 3, Name: "Build Number", Description: "The build number for the paper release.", EnvVariable: "BUILD_NUMBER",
						DefaultValue: "latest", UserViewable: true, UserEditable: false, Rules: "required|string|max:20"},
				}},
			{ID: 2, NestID: 2, UUID: "a1f8b7c6-0000-4000-8000-000000000002", Name: "Valheim", Author: "eggs@pterodactyl.io",
				Description:  "Valheim dedicated server.",
				DockerImages: map[string]string{"Debian": "ghcr.io/parkervcp/yolks:debian"},
				Startup:      "./valheim_server.x86_64 -name \"{{SERVER_NAME}}\" -port {{SERVER_PORT}} -password \"{{PASSWORD}}\"",
				Variables: []EggVariable{
					{ID: 4, Name: "Server Name", Description: "The name shown in the server browser.", EnvVariable: "SERVER_NAME",
						DefaultValue: "Valheim", UserViewable: true, UserEditable: true, Rules: "required|string|max:64"},
					{ID: 5, Name: "Password", Description: "At least 5 characters.", EnvVariable: "PASSWORD",
						DefaultValue: "", UserViewable: true, UserEditable: true, Rules: "required|string|min:5|max:32"},
					{ID: 6, Name: "Max Players", Description: "Players allowed at once.", EnvVariable: "MAX_PLAYERS",
						DefaultValue: "10", UserViewable: true, UserEditable: true, Rules: "required|numeric|between:1,64"},
					{ID: 7, Name: "Public", Description: "List the server publicly.", EnvVariable: "PUBLIC",
						DefaultValue: "1", UserViewable: false, UserEditable: false, Rules: "required|in:0,1"},
				}},
		},
		Users: []User{
			{ID: 1, UUID: "9b5f2c1e-0000-4000-8000-000000000001", Username: "admin", Email: "admin@example.test", FirstName: "Ada", LastName: "Admin", RootAdmin: true},
			{ID: 2, UUID: "9b5f2c1e-0000-4000-8000-000000000002", Username: "alice", Email: "alice@example.test", FirstName: "Alice", LastName: "Customer"},
			{ID: 3, UUID: "9b5f2c1e-0000-4000-8000-000000000003", Username: "bob", Email: "bob@example.test", FirstName: "Bob", LastName: "Customer"},
		},
	}
	id := 1
	for _, n := range []struct {
		node int
		ip   string
	}{{1, "10.0.1.10"}, {1, "10.0.1.11"}, {2, "10.0.2.10"}} {
		for port := 25565; port < 25575; port++ {
			p.Allocations = append(p.Allocations, Allocation{ID: id, NodeID: n.node, IP: n.ip, Port: port})
			id++
		}
	}
	return p
}

// DemoServers are the servers `provisiond dev` adds with AddServer to
// DemoPanel: a running and a stopped Minecraft server of alice's and a
// suspended Valheim server of bob's.
func DemoServers() []GameServer {
	mc := Limits{Memory: 4096, Swap: 0, Disk: 20480, IO: 500, CPU: 200}
	return []GameServer{
		{ID: 1, ExternalID: "demo-mc-1", Name: "Survival", OwnerID: 2, AllocationID: 1, EggID: 1, State: StateRunning,
			Limits: mc, FeatureLimits: FeatureLimits{Databases: 1, Allocations: 2, Backups: 3}},
		{ID: 2, ExternalID: "demo-mc-2", Name: "Creative", OwnerID: 2, AllocationID: 2, EggID: 1,
			Limits: mc, FeatureLimits: FeatureLimits{Backups: 1}},
		{ID: 3, ExternalID: "demo-valheim-1", Name: "Vikings", OwnerID: 3, AllocationID: 21, EggID: 2, Status: StatusSuspended,
			Limits:        Limits{Memory: 8192, Disk: 30720, IO: 500, CPU: 400},
			FeatureLimits: FeatureLimits{Backups: 2}, Environment: map[string]string{"PASSWORD": "odin-rules"}},
	}
}

// load adds the panel's world; it runs before the Server is shared.
func (s *Server) load(p Panel) {
	for _, l := range p.Locations {
		s.locations[l.ID] = &l
	}
	for _, n := range p.Nodes {
		if n.Secret == "" {
			n.Secret = s.cfg.NodeSecret
		}
		if n.UUID == "" {
			n.UUID = uuid.NewString()
		}
		s.nodes[n.ID] = &n
	}
	for _, a := range p.Allocations {
		if _, ok := s.nodes[a.NodeID]; ok {
			s.allocs[a.ID] = &a
		}
	}
	for _, e := range p.Eggs {
		e.Variables = slices.Clone(e.Variables)
		s.eggs[e.ID] = &e
	}
	for _, u := range p.Users {
		if u.UUID == "" {
			u.UUID = uuid.NewString()
		}
		s.users[u.ID] = &u
	}
}

// sorted returns a map's values ordered by id.
func sorted[T any](m map[int]*T) []*T {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// nextID is one more than the largest key.
func nextID[T any](m map[int]*T) int {
	if len(m) == 0 {
		return 1
	}
	return slices.Max(slices.Collect(maps.Keys(m))) + 1
}

// defaultImage is the egg's first image by display name.
func (e *Egg) defaultImage() string {
	names := slices.Sorted(maps.Keys(e.DockerImages))
	if len(names) == 0 {
		return ""
	}
	return e.DockerImages[names[0]]
}

// variable finds an egg variable by its environment name.
func (e *Egg) variable(env string) (EggVariable, bool) {
	i := slices.IndexFunc(e.Variables, func(v EggVariable) bool { return v.EnvVariable == env })
	if i < 0 {
		return EggVariable{}, false
	}
	return e.Variables[i], true
}

// AddServer adds a server as the panel would have created it and Wings
// installed it: its allocation is taken, missing ids, image, startup and
// variables get the egg's defaults. It refuses unknown owners, eggs and
// allocations and allocations already taken.
func (s *Server) AddServer(g GameServer) (GameServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	egg, ok := s.eggs[g.EggID]
	if !ok {
		return GameServer{}, fmt.Errorf("no egg %d", g.EggID)
	}
	if _, ok := s.users[g.OwnerID]; !ok {
		return GameServer{}, fmt.Errorf("no user %d", g.OwnerID)
	}
	a, ok := s.allocs[g.AllocationID]
	if !ok || a.ServerID != 0 {
		return GameServer{}, fmt.Errorf("allocation %d is unknown or taken", g.AllocationID)
	}
	if g.ID == 0 {
		g.ID = nextID(s.servers)
	} else if _, taken := s.servers[g.ID]; taken {
		return GameServer{}, fmt.Errorf("server %d exists", g.ID)
	}
	if g.UUID == "" {
		g.UUID = uuid.NewString()
	}
	if g.Identifier == "" {
		g.Identifier = g.UUID[:8]
	}
	g.NodeID = a.NodeID
	g.Image = cmp.Or(g.Image, egg.defaultImage())
	g.Startup = cmp.Or(g.Startup, egg.Startup)
	g.State = cmp.Or(g.State, StateOffline)
	env := map[string]string{}
	for _, v := range egg.Variables {
		env[v.EnvVariable] = v.DefaultValue
	}
	maps.Copy(env, g.Environment)
	g.Environment = env
	now := time.Now()
	if g.CreatedAt.IsZero() {
		g.CreatedAt = now
	}
	g.UpdatedAt = cmp.Or(g.UpdatedAt, g.CreatedAt)
	a.ServerID = g.ID
	gs := &serverState{GameServer: g, conns: map[*wsConn]bool{}}
	if g.State == StateRunning {
		gs.started = now
	}
	s.servers[g.ID] = gs
	return gs.snapshot(), nil
}

// snapshot copies the server for a caller; the lock must be held.
func (gs *serverState) snapshot() GameServer {
	g := gs.GameServer
	g.Environment = maps.Clone(g.Environment)
	return g
}

// Server returns a copy of the server's current state.
func (s *Server) Server(id int) (GameServer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, ok := s.servers[id]
	if !ok {
		return GameServer{}, false
	}
	return gs.snapshot(), true
}

// SetStatus sets a server's status on the panel without a task behind it,
// as the admin area's Toggle Install Status (installing or normal) or an
// install that Wings reported failed leaves it: status is "",
// installing, install_failed or reinstall_failed. Wings is not told: the
// power state stays. A server installing or restoring a backup is
// refused, as its task would overwrite the status, and so is a suspended
// one (unsuspend it through the API).
func (s *Server) SetStatus(id int, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, ok := s.servers[id]
	if !ok || gs.deleted {
		return fmt.Errorf("no server %d", id)
	}
	if !slices.Contains([]string{"", StatusInstalling, StatusInstallFailed, StatusReinstallFailed}, status) {
		return fmt.Errorf("status %q cannot be set; suspend through the API", status)
	}
	if gs.installRun != nil || gs.Status == StatusRestoringBackup || gs.Status == StatusSuspended {
		return fmt.Errorf("server %d is %s", id, cmp.Or(gs.Status, StatusInstalling))
	}
	gs.Status, gs.UpdatedAt = status, time.Now()
	return nil
}

// Servers returns every server, ordered by id.
func (s *Server) Servers() []GameServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []GameServer
	for _, gs := range sorted(s.servers) {
		out = append(out, gs.snapshot())
	}
	return out
}

// Backups returns the server's backups, oldest first.
func (s *Server) Backups(serverID int) []Backup {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Backup
	if gs, ok := s.servers[serverID]; ok {
		for _, b := range gs.backups {
			c := b.Backup
			c.IgnoredFiles = slices.Clone(c.IgnoredFiles)
			out = append(out, c)
		}
	}
	return out
}

// AddUser adds a user; a zero ID takes the next free one. It returns the
// stored user.
func (s *Server) AddUser(u User) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.ID == 0 {
		u.ID = nextID(s.users)
	} else if _, taken := s.users[u.ID]; taken {
		return User{}, errors.New("user id taken")
	}
	if u.UUID == "" {
		u.UUID = uuid.NewString()
	}
	s.users[u.ID] = &u
	return u, nil
}
