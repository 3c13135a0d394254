package sim

import (
	"fmt"
	"net/http"
	"time"
)

// defaultUptime is how long a node has been up when the server starts,
// unless Config.NodeUptime says otherwise: ten days, the uptime the
// simulator has always reported, so that a task's pstart has the usual 8
// hex digits.
const defaultUptime = 10 * 24 * time.Hour

// nodeTimezone is the timezone every simulated node is set to, as
// /etc/timezone holds it.
const nodeTimezone = "Europe/Berlin"

// nodeClock is what a node's clock is: when the node booted (by our
// clock) and how far its clock is off ours.
type nodeClock struct {
	boot time.Time
	skew time.Duration
}

// initClocks gives every node its clock from the configuration.
func (s *Server) initClocks(now time.Time) {
	s.clocks = map[string]*nodeClock{}
	for _, n := range s.cfg.Nodes {
		up, ok := s.cfg.NodeUptime[n]
		if !ok {
			up = defaultUptime
		}
		s.clocks[n] = &nodeClock{boot: now.Add(-up), skew: s.cfg.NodeClockSkew[n]}
	}
	for what, m := range map[string]map[string]time.Duration{"NodeUptime": s.cfg.NodeUptime, "NodeClockSkew": s.cfg.NodeClockSkew} {
		for n := range m {
			if _, ok := s.clocks[n]; !ok {
				panic(fmt.Sprintf("proxmox sim: Config.%s names node %q, which is not in Config.Nodes", what, n))
			}
		}
	}
}

// SetNodeUptime makes the node have been up for d from now on, as if it
// had booted d ago: its uptime and the pstart of the tasks it starts from
// now on count from then. It reports whether the node exists.
func (s *Server) SetNodeUptime(node string, d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clocks[node]
	if ok {
		c.boot = time.Now().Add(-d)
	}
	return ok
}

// SetNodeClockSkew sets the node's clock d ahead of ours (behind when d is
// negative): the time it answers, the start and end of the tasks it runs
// from now on, its task list filters and the times of the backups it
// makes follow its clock. Tasks already started keep the times they got.
// It reports whether the node exists.
func (s *Server) SetNodeClockSkew(node string, d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clocks[node]
	if ok {
		c.skew = d
	}
	return ok
}

// NodeTime is the time on the node's clock now, and false when there is
// no such node.
func (s *Server) NodeTime(node string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clocks[node]; !ok {
		return time.Time{}, false
	}
	return s.nodeNow(node), true
}

// nodeNow is the time on a node's clock; the lock must be held.
func (s *Server) nodeNow(node string) time.Time {
	now := time.Now()
	if c := s.clocks[node]; c != nil {
		return now.Add(c.skew)
	}
	return now
}

// uptime is how long the node has been up; the lock must be held. It is
// measured on the kernel's monotonic clock (/proc/uptime), so the skew of
// the wall clock does not change it.
func (s *Server) uptime(node string) time.Duration {
	if c := s.clocks[node]; c != nil {
		return time.Since(c.boot)
	}
	return defaultUptime
}

// pstart is what a worker started now on the node gets as its start time:
// clock ticks (USER_HZ, 100 a second) since the node booted, as field 22
// of /proc/PID/stat gives it (pve-common PVE::ProcFSTools::read_proc_starttime).
// It outgrows 8 hex digits after some 497 days of uptime; pve-common's
// upid_decode allows up to 9 for that reason. The lock must be held.
func (s *Server) pstart(node string) uint64 {
	return uint64(s.uptime(node) / (10 * time.Millisecond))
}

// nodeTime is GET /nodes/{node}/time, after PVE::API2::Nodes::Time: the
// node's clock as epoch seconds, and its local time as the epoch seconds
// a UTC clock would show for the same wall clock reading
// (timegm(localtime(time))).
func (s *Server) nodeTime(_ *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	s.mu.Lock()
	now := s.nodeNow(c.node)
	s.mu.Unlock()
	return map[string]any{
		"time": now.Unix(), "localtime": now.Add(berlinOffset(now)).Unix(), "timezone": nodeTimezone,
	}, nil
}

// berlinOffset is Europe/Berlin's offset from UTC at t: CET, and CEST
// from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last
// Sunday of October, the EU rule since 1996. It is computed rather than
// read from the system's zoneinfo, which a test machine may lack.
func berlinOffset(t time.Time) time.Duration {
	u := t.UTC()
	lastSunday := func(m time.Month) time.Time {
		d := time.Date(u.Year(), m+1, 0, 1, 0, 0, 0, time.UTC) // the month's last day, 01:00 UTC
		return d.AddDate(0, 0, -int(d.Weekday()))
	}
	if !u.Before(lastSunday(time.March)) && u.Before(lastSunday(time.October)) {
		return 2 * time.Hour
	}
	return time.Hour
}
