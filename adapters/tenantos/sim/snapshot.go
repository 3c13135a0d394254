package sim

import (
	"encoding/json"
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

// snapshot is the saved state: the servers, each with its last install.
// It is its own set of types, so that the exported model types can change
// without changing what a saved file means.
type snapshot struct {
	Version int `json:"version"`
	// SavedAt is when Save ran; installs and power changes in progress
	// are written as if they had ended then.
	SavedAt time.Time        `json:"savedAt"`
	Servers []snapshotServer `json:"servers"`
}

type snapshotServer struct {
	Machine
	Install *snapshotInstall `json:"install,omitempty"`
	// Installs counts the reinstallations started on it (CountInstalls).
	Installs int `json:"installs"`
}

type snapshotInstall struct {
	ProfileID   int           `json:"profileId"`
	Hostname    string        `json:"hostname,omitempty"`
	PowerAction string        `json:"powerAction"`
	Start       time.Time     `json:"start"`
	Duration    time.Duration `json:"duration"`
	FailAt      int           `json:"failAt"`
	Failure     string        `json:"failure,omitempty"`
	Stopped     time.Time     `json:"stopped,omitzero"`
}

// Save writes the simulator's servers, with their last installs, as JSON.
// An install or a power change still under way ends as it would have, at
// the time of Save, so that a loaded simulator shows it ended.
func (s *Server) Save(w io.Writer) error {
	s.mu.Lock()
	now := time.Now()
	snap := snapshot{Version: SnapshotVersion, SavedAt: now.UTC()}
	for _, id := range slices.Sorted(maps.Keys(s.machines)) {
		// A copy ends what is under way; the live server goes on.
		m := &machine{Machine: s.machines[id].Machine.clone(), updated: now}
		if in := s.machines[id].install; in != nil {
			c := *in
			m.install = &c
		}
		if p := s.machines[id].pending; p != nil {
			c := *p
			m.pending = &c
		}
		if in := m.install; in.running(now) {
			// Cut short to end now, with its outcome: the phases left
			// run in no time.
			in.dur = max(now.Sub(in.start), time.Nanosecond)
			if in.failAt >= 0 {
				in.failAt = min(in.failAt, len(phases[in.profile.Kind])-1)
			}
		}
		if m.pending != nil {
			m.pending.at = now
		}
		s.settle(m, now.Add(time.Nanosecond))
		ss := snapshotServer{Machine: m.Machine.clone(), Installs: s.installs[id]}
		if in := m.install; in != nil {
			ss.Install = &snapshotInstall{ProfileID: in.profile.ID, Hostname: in.hostname, PowerAction: in.powerAction,
				Start: in.start.UTC(), Duration: in.dur, FailAt: in.failAt, Failure: in.failure, Stopped: in.stopped}
		}
		snap.Servers = append(snap.Servers, ss)
	}
	s.mu.Unlock()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(snap)
}

// Load replaces the simulator's servers with those Save wrote, and
// refuses, changing nothing, a snapshot that is not of SnapshotVersion, has
// a server without a positive id or twice, or an install of a profile the
// simulator does not have. Console sessions are forgotten; faults and the
// call log are kept.
func (s *Server) Load(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("tenantos sim: loading snapshot: %w", err)
	}
	var snap snapshot
	if err := simkit.DecodeSnapshot(data, SnapshotVersion, &snap); err != nil {
		return fmt.Errorf("tenantos sim: loading snapshot: %w", err)
	}
	now := time.Now()
	machines, installs := map[int]*machine{}, map[int]int{}
	for _, ss := range snap.Servers {
		if ss.ID <= 0 || machines[ss.ID] != nil {
			return fmt.Errorf("tenantos sim: loading snapshot: server id %d is not positive or comes twice", ss.ID)
		}
		m := &machine{Machine: ss.Machine.clone(), updated: now}
		if in := ss.Install; in != nil {
			p, ok := s.profile(in.ProfileID)
			if !ok {
				return fmt.Errorf("tenantos sim: loading snapshot: server %d's install has an unknown profile %d", ss.ID, in.ProfileID)
			}
			// Its end was applied before Save wrote the server.
			m.install = &install{profile: p, hostname: in.Hostname, powerAction: in.PowerAction, start: in.Start,
				dur: in.Duration, failAt: in.FailAt, failure: in.Failure, stopped: in.Stopped, settled: true}
		}
		machines[ss.ID], installs[ss.ID] = m, ss.Installs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.machines, s.installs = machines, installs
	clear(s.consoles)
	return nil
}
