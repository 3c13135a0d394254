package sim

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// SnapshotVersion is the version of the format Save writes and the only
// one Load reads.
const SnapshotVersion = 1

// installRun is how an install in progress will end.
type installRun struct {
	err        string // the task error that fails it, "" to succeed
	startAfter bool   // start_on_completion
	reinstall  bool   // a reinstall: a failure is reinstall_failed
}

// The snapshot format. It is its own set of types, so that the exported
// model types can change without changing what a saved file means.

type snapshot struct {
	Version int `json:"version"`
	// SavedAt is when Save ran; tasks in progress are written as if they
	// had ended then.
	SavedAt time.Time `json:"savedAt"`
	// Epoch is the created_at and updated_at the panel shows for
	// locations, nodes, eggs and users.
	Epoch       time.Time          `json:"epoch"`
	Locations   []snapshotLocation `json:"locations"`
	Nodes       []snapshotNode     `json:"nodes"`
	Allocations []snapshotAlloc    `json:"allocations"`
	Eggs        []Egg              `json:"eggs"`
	Users       []snapshotUser     `json:"users"`
	Servers     []snapshotServer   `json:"servers"`
}

type snapshotLocation struct {
	ID    int    `json:"id"`
	Short string `json:"short"`
	Long  string `json:"long"`
}

type snapshotNode struct {
	ID                 int    `json:"id"`
	UUID               string `json:"uuid"`
	Name               string `json:"name"`
	LocationID         int    `json:"locationId"`
	FQDN               string `json:"fqdn"`
	Memory             int    `json:"memory"`
	Disk               int    `json:"disk"`
	MemoryOverallocate int    `json:"memoryOverallocate"`
	DiskOverallocate   int    `json:"diskOverallocate"`
	Private            bool   `json:"private,omitempty"`
	// Secret is the node's own JWT secret; empty for one that used
	// Config.NodeSecret, which then is the loading simulator's.
	Secret string `json:"secret,omitempty"`
}

type snapshotAlloc struct {
	ID     int    `json:"id"`
	NodeID int    `json:"nodeId"`
	IP     string `json:"ip"`
	Alias  string `json:"alias,omitempty"`
	Port   int    `json:"port"`
	Notes  string `json:"notes,omitempty"`
	// ServerID is the server that holds it, 0 while it is free.
	ServerID int `json:"serverId,omitempty"`
}

type snapshotUser struct {
	ID         int    `json:"id"`
	ExternalID string `json:"externalId,omitempty"`
	UUID       string `json:"uuid"`
	Username   string `json:"username"`
	Email      string `json:"email"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	RootAdmin  bool   `json:"rootAdmin,omitempty"`
}

type snapshotServer struct {
	ID          int    `json:"id"`
	ExternalID  string `json:"externalId,omitempty"`
	UUID        string `json:"uuid"`
	Identifier  string `json:"identifier"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Status is "", "install_failed", "reinstall_failed" or "suspended":
	// Save writes no task in progress.
	Status string `json:"status"`
	// State is "offline" or "running".
	State         string                `json:"state"`
	OwnerID       int                   `json:"ownerId"`
	NodeID        int                   `json:"nodeId"`
	AllocationID  int                   `json:"allocationId"`
	EggID         int                   `json:"eggId"`
	Limits        snapshotLimits        `json:"limits"`
	FeatureLimits snapshotFeatureLimits `json:"featureLimits"`
	Image         string                `json:"image"`
	Startup       string                `json:"startup"`
	Environment   map[string]string     `json:"environment"`
	SkipScripts   bool                  `json:"skipScripts,omitempty"`
	CreatedAt     time.Time             `json:"createdAt"`
	UpdatedAt     time.Time             `json:"updatedAt"`
	// Backups are oldest first.
	Backups []snapshotBackup `json:"backups"`
}

type snapshotLimits struct {
	Memory      int    `json:"memory"`
	Swap        int    `json:"swap"`
	Disk        int    `json:"disk"`
	IO          int    `json:"io"`
	CPU         int    `json:"cpu"`
	Threads     string `json:"threads,omitempty"`
	OOMDisabled bool   `json:"oomDisabled"`
}

type snapshotFeatureLimits struct {
	Databases   int `json:"databases"`
	Allocations int `json:"allocations"`
	Backups     int `json:"backups"`
}

type snapshotBackup struct {
	UUID         string    `json:"uuid"`
	Name         string    `json:"name"`
	IgnoredFiles []string  `json:"ignoredFiles"`
	Checksum     string    `json:"checksum,omitempty"`
	Bytes        int64     `json:"bytes"`
	Successful   bool      `json:"successful"`
	Locked       bool      `json:"locked"`
	CreatedAt    time.Time `json:"createdAt"`
	CompletedAt  time.Time `json:"completedAt"`
}

// Save writes the simulator's state as indented JSON (format version
// SnapshotVersion): locations, nodes (with a JWT secret of their own, not
// the Config.NodeSecret default), allocations and which server holds
// them, eggs with their variables, users, game servers (ids, uuid,
// identifier, external id, name, description, owner, node, limits,
// feature limits, egg, docker image, startup, environment, skip_scripts,
// timestamps, status such as suspended or install_failed, power state)
// and their backups, and the created_at the panel shows for locations,
// nodes, eggs and users. There are no id counters to save: a new user,
// server or egg variable takes one more than the largest id held, backups
// take random uuids, so the saved records decide future ids.
//
// Tasks in progress are not saved; each server is written as its tasks
// would have left it had they ended at the time of Save:
//   - a server mid-install comes back installed, or install_failed
//     (reinstall_failed for a reinstall) if an injected task error had
//     already doomed the install; one created with start_on_completion
//     comes back running; a server suspended while it installed stays
//     suspended;
//   - a server restoring a backup comes back restored (status "" and
//     offline, as the restore stopped it);
//   - a starting server comes back running, a stopping one offline, or
//     running when the stop was a restart's; a start or stop that an
//     injected fault would have failed is not known and completes;
//   - a backup still running comes back completed and successful, as it
//     would have without a fault, completed at the time of Save.
//
// Not saved: websocket connections, the console history and tick count,
// uptime and stats (a running server's uptime restarts at Load), the power
// lock, download tokens already used (so a download URL that was used
// works once more after Load, until it expires), the token clock's
// AdvanceClock offset, faults, the call log and the rest of the simkit
// Kit's state, and the Config.
//
// Save may be called at any time, also after Close (as `provisiond dev`
// does when it stops): it copies the state under the lock.
func (s *Server) Save(w io.Writer) error {
	snap := s.snapshot(time.Now())
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(snap); err != nil {
		return fmt.Errorf("sim: saving snapshot: %w", err)
	}
	return nil
}

// snapshot copies the state with every task in progress ended at now.
func (s *Server) snapshot(now time.Time) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &snapshot{Version: SnapshotVersion, SavedAt: now, Epoch: s.epoch,
		Locations: []snapshotLocation{}, Nodes: []snapshotNode{}, Allocations: []snapshotAlloc{},
		Eggs: []Egg{}, Users: []snapshotUser{}, Servers: []snapshotServer{}}
	for _, l := range sorted(s.locations) {
		snap.Locations = append(snap.Locations, snapshotLocation{ID: l.ID, Short: l.Short, Long: l.Long})
	}
	for _, n := range sorted(s.nodes) {
		secret := n.Secret
		if secret == s.cfg.NodeSecret {
			secret = ""
		}
		snap.Nodes = append(snap.Nodes, snapshotNode{ID: n.ID, UUID: n.UUID, Name: n.Name, LocationID: n.LocationID,
			FQDN: n.FQDN, Memory: n.Memory, Disk: n.Disk, MemoryOverallocate: n.MemoryOverallocate,
			DiskOverallocate: n.DiskOverallocate, Private: n.Private, Secret: secret})
	}
	for _, a := range sorted(s.allocs) {
		snap.Allocations = append(snap.Allocations, snapshotAlloc{ID: a.ID, NodeID: a.NodeID, IP: a.IP, Alias: a.Alias,
			Port: a.Port, Notes: a.Notes, ServerID: a.ServerID})
	}
	for _, e := range sorted(s.eggs) {
		egg := *e
		egg.DockerImages, egg.Features, egg.Variables = maps.Clone(e.DockerImages), slices.Clone(e.Features), slices.Clone(e.Variables)
		snap.Eggs = append(snap.Eggs, egg)
	}
	for _, u := range sorted(s.users) {
		snap.Users = append(snap.Users, snapshotUser(*u))
	}
	for _, gs := range sorted(s.servers) {
		snap.Servers = append(snap.Servers, settled(gs, now))
	}
	return snap
}

// settled is the server as its tasks in progress would have left it had
// they ended at now; the lock must be held.
func settled(gs *serverState, now time.Time) snapshotServer {
	g := gs.GameServer
	if run := gs.installRun; run != nil || g.Status == StatusInstalling {
		failed := run != nil && run.err != ""
		if g.Status == StatusInstalling {
			g.Status = ""
			if failed {
				g.Status = failedStatus(run.reinstall)
			}
		}
		g.UpdatedAt = now
		if run != nil && run.startAfter && !failed && g.Status == "" {
			g.State = StateRunning
		}
	}
	if g.Status == StatusRestoringBackup {
		g.Status = ""
	}
	switch g.State {
	case StateStarting:
		g.State = StateRunning
	case StateStopping:
		g.State = StateOffline
		if gs.restarting {
			g.State = StateRunning
		}
	}
	out := snapshotServer{ID: g.ID, ExternalID: g.ExternalID, UUID: g.UUID, Identifier: g.Identifier, Name: g.Name,
		Description: g.Description, Status: g.Status, State: g.State, OwnerID: g.OwnerID, NodeID: g.NodeID,
		AllocationID: g.AllocationID, EggID: g.EggID, Limits: snapshotLimits(g.Limits),
		FeatureLimits: snapshotFeatureLimits(g.FeatureLimits), Image: g.Image, Startup: g.Startup,
		Environment: maps.Clone(g.Environment), SkipScripts: g.SkipScripts, CreatedAt: g.CreatedAt,
		UpdatedAt: g.UpdatedAt, Backups: []snapshotBackup{}}
	if out.Environment == nil {
		out.Environment = map[string]string{}
	}
	for _, b := range gs.backups {
		c := b.Backup
		if c.CompletedAt.IsZero() {
			completeBackup(&c, now)
		}
		out.Backups = append(out.Backups, snapshotBackup{UUID: c.UUID, Name: c.Name,
			IgnoredFiles: slices.Clone(c.IgnoredFiles), Checksum: c.Checksum, Bytes: c.Bytes,
			Successful: c.Successful, Locked: c.Locked, CreatedAt: c.CreatedAt, CompletedAt: c.CompletedAt})
	}
	return out
}

// completeBackup ends a running backup successfully at t, as its task
// does without a fault.
func completeBackup(b *Backup, t time.Time) {
	sum := sha1.Sum([]byte(b.UUID))
	b.CompletedAt = t
	b.Successful, b.Checksum, b.Bytes = true, "sha1:"+hex.EncodeToString(sum[:]), 48*mib
}

// Load replaces the simulator's whole state (its Config.Panel world
// included) with one written by Save, and refuses, changing nothing, a
// snapshot that is not valid JSON, is not of version SnapshotVersion or
// does not hold together (duplicate ids, uuids, identifiers or external
// ids, a server whose owner, egg, node or allocation is missing).
//
// Running servers run again from the time of Load, with fresh uptime and
// stats; a snapshot written by hand with tasks in progress has them ended
// as Save would have. Load is meant to run right after New, before the
// simulator serves requests, but is safe at any time: under the lock it
// stops the tasks of the state it replaces, closes every websocket
// connection and forgets the download tokens already used. A request
// being served at that moment may still act on the replaced state. Faults
// and the call log are kept. Load on a closed Server fails.
func (s *Server) Load(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("sim: loading snapshot: %w", err)
	}
	snap, err := decodeSnapshot(data)
	if err != nil {
		return fmt.Errorf("sim: loading snapshot: %w", err)
	}
	now := time.Now()
	st, err := s.build(snap, now)
	if err != nil {
		return fmt.Errorf("sim: loading snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sim: loading snapshot: the simulator is closed")
	}
	for _, gs := range s.servers {
		gs.deleted = true
		gs.stopTimers()
		for _, b := range gs.backups {
			b.deleted = true
			if b.timer != nil {
				b.timer.Stop()
			}
		}
	}
	for c := range s.conns {
		c.close()
	}
	clear(s.conns)
	clear(s.downloads)
	s.epoch = snap.Epoch
	if s.epoch.IsZero() {
		s.epoch = s.bootTime
	}
	s.locations, s.nodes, s.allocs, s.eggs, s.users, s.servers = st.locations, st.nodes, st.allocs, st.eggs, st.users, st.servers
	return nil
}

// decodeSnapshot reads and checks a snapshot's JSON and version.
func decodeSnapshot(data []byte) (*snapshot, error) {
	snap := &snapshot{}
	if err := simkit.DecodeSnapshot(data, SnapshotVersion, snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// state is the simulator's world as Load builds it.
type state struct {
	locations map[int]*Location
	nodes     map[int]*Node
	allocs    map[int]*Allocation
	eggs      map[int]*Egg
	users     map[int]*User
	servers   map[int]*serverState
}

// build makes the world of a snapshot and checks that it holds together;
// running servers start at now. It reads only the Config, which does not
// change, so it needs no lock.
func (s *Server) build(snap *snapshot, now time.Time) (*state, error) {
	st := &state{locations: map[int]*Location{}, nodes: map[int]*Node{}, allocs: map[int]*Allocation{},
		eggs: map[int]*Egg{}, users: map[int]*User{}, servers: map[int]*serverState{}}
	for _, l := range snap.Locations {
		if _, dup := st.locations[l.ID]; dup {
			return nil, fmt.Errorf("location %d appears twice", l.ID)
		}
		st.locations[l.ID] = &Location{ID: l.ID, Short: l.Short, Long: l.Long}
	}
	for _, n := range snap.Nodes {
		if _, dup := st.nodes[n.ID]; dup {
			return nil, fmt.Errorf("node %d appears twice", n.ID)
		}
		secret := n.Secret
		if secret == "" {
			secret = s.cfg.NodeSecret
		}
		st.nodes[n.ID] = &Node{ID: n.ID, UUID: n.UUID, Name: n.Name, LocationID: n.LocationID, FQDN: n.FQDN,
			Memory: n.Memory, Disk: n.Disk, MemoryOverallocate: n.MemoryOverallocate,
			DiskOverallocate: n.DiskOverallocate, Private: n.Private, Secret: secret}
	}
	for _, a := range snap.Allocations {
		if _, dup := st.allocs[a.ID]; dup {
			return nil, fmt.Errorf("allocation %d appears twice", a.ID)
		}
		if _, ok := st.nodes[a.NodeID]; !ok {
			return nil, fmt.Errorf("allocation %d is on node %d, which is not in the snapshot", a.ID, a.NodeID)
		}
		st.allocs[a.ID] = &Allocation{ID: a.ID, NodeID: a.NodeID, IP: a.IP, Alias: a.Alias, Port: a.Port,
			Notes: a.Notes, ServerID: a.ServerID}
	}
	for _, e := range snap.Eggs {
		if _, dup := st.eggs[e.ID]; dup {
			return nil, fmt.Errorf("egg %d appears twice", e.ID)
		}
		egg := e
		st.eggs[e.ID] = &egg
	}
	for _, u := range snap.Users {
		if _, dup := st.users[u.ID]; dup {
			return nil, fmt.Errorf("user %d appears twice", u.ID)
		}
		user := User(u)
		st.users[u.ID] = &user
	}
	uuids, identifiers, externals, backups := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, g := range snap.Servers {
		if err := checkServer(st, g); err != nil {
			return nil, err
		}
		switch {
		case st.servers[g.ID] != nil:
			return nil, fmt.Errorf("server %d appears twice", g.ID)
		case uuids[g.UUID]:
			return nil, fmt.Errorf("server %d: uuid %s is taken", g.ID, g.UUID)
		case identifiers[g.Identifier]:
			return nil, fmt.Errorf("server %d: identifier %s is taken", g.ID, g.Identifier)
		case g.ExternalID != "" && externals[g.ExternalID]:
			return nil, fmt.Errorf("server %d: external id %q is taken", g.ID, g.ExternalID)
		}
		uuids[g.UUID], identifiers[g.Identifier], externals[g.ExternalID] = true, true, true
		gs := &serverState{GameServer: GameServer{ID: g.ID, ExternalID: g.ExternalID, UUID: g.UUID,
			Identifier: g.Identifier, Name: g.Name, Description: g.Description, Status: g.Status, State: g.State,
			OwnerID: g.OwnerID, NodeID: g.NodeID, AllocationID: g.AllocationID, EggID: g.EggID,
			Limits: Limits(g.Limits), FeatureLimits: FeatureLimits(g.FeatureLimits), Image: g.Image,
			Startup: g.Startup, Environment: maps.Clone(g.Environment), SkipScripts: g.SkipScripts,
			CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}, conns: map[*wsConn]bool{}}
		if gs.Environment == nil {
			gs.Environment = map[string]string{}
		}
		// A snapshot written by hand may hold tasks in progress: end them
		// as Save would have.
		if gs.Status == StatusInstalling {
			gs.Status = ""
			gs.UpdatedAt = now
		}
		if gs.Status == StatusRestoringBackup {
			gs.Status = ""
		}
		switch gs.State {
		case StateStarting:
			gs.State = StateRunning
		case StateStopping:
			gs.State = StateOffline
		}
		if gs.State == StateRunning {
			gs.started = now
		}
		for _, b := range g.Backups {
			if b.UUID == "" || backups[b.UUID] {
				return nil, fmt.Errorf("server %d: backup uuid %q is empty or taken", g.ID, b.UUID)
			}
			backups[b.UUID] = true
			bs := &backupState{Backup: Backup{UUID: b.UUID, ServerID: g.ID, Name: b.Name,
				IgnoredFiles: slices.Clone(b.IgnoredFiles), Checksum: b.Checksum, Bytes: b.Bytes,
				Successful: b.Successful, Locked: b.Locked, CreatedAt: b.CreatedAt, CompletedAt: b.CompletedAt}}
			if bs.CompletedAt.IsZero() {
				completeBackup(&bs.Backup, now)
			}
			gs.backups = append(gs.backups, bs)
		}
		st.servers[g.ID] = gs
	}
	for _, a := range st.allocs {
		if a.ServerID != 0 && st.servers[a.ServerID] == nil {
			return nil, fmt.Errorf("allocation %d is held by server %d, which is not in the snapshot", a.ID, a.ServerID)
		}
	}
	return st, nil
}

// checkServer checks that a saved server's references hold in st.
func checkServer(st *state, g snapshotServer) error {
	switch {
	case g.ID <= 0:
		return fmt.Errorf("server id %d is not positive", g.ID)
	case g.UUID == "" || g.Identifier == "":
		return fmt.Errorf("server %d has no uuid or identifier", g.ID)
	case st.users[g.OwnerID] == nil:
		return fmt.Errorf("server %d: owner %d is not in the snapshot", g.ID, g.OwnerID)
	case st.eggs[g.EggID] == nil:
		return fmt.Errorf("server %d: egg %d is not in the snapshot", g.ID, g.EggID)
	case st.nodes[g.NodeID] == nil:
		return fmt.Errorf("server %d: node %d is not in the snapshot", g.ID, g.NodeID)
	}
	a := st.allocs[g.AllocationID]
	if a == nil || a.ServerID != g.ID || a.NodeID != g.NodeID {
		return fmt.Errorf("server %d: allocation %d is missing, not held by it or not on its node", g.ID, g.AllocationID)
	}
	if !slices.Contains([]string{"", StatusInstalling, StatusInstallFailed, StatusReinstallFailed, StatusSuspended, StatusRestoringBackup}, g.Status) {
		return fmt.Errorf("server %d: unknown status %q", g.ID, g.Status)
	}
	if !slices.Contains([]string{StateOffline, StateStarting, StateRunning, StateStopping}, g.State) {
		return fmt.Errorf("server %d: unknown power state %q", g.ID, g.State)
	}
	return nil
}
