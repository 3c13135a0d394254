package sim

import (
	"slices"
	"time"
)

// powerMethods are the /power/{method} endpoints served, as listed in a
// server's powerprovider.supportedFeatures.
var powerMethods = []string{"getPowerStatus", "setPowerOn", "setPowerOff", "setPowerReset", "setPowerCycle"}

// powerChange is a power action the BMC has accepted but the server has not
// carried out yet.
type powerChange struct {
	method string
	at     time.Time
}

// power answers GET /api/servers/{id}/power/{method}: the status, or
// "executed" for an action whose effect shows after TaskDuration. A
// TaskError fault makes the action be accepted and never happen.
func (s *Server) power(q *request) (any, error) {
	method := q.r.PathValue("method")
	if !slices.Contains(powerMethods, method) {
		return nil, refuse("The power method %s is not supported by the power provider of this server.", method)
	}
	if method == "getPowerStatus" {
		return q.m.Power, nil
	}
	s.schedulePower(q.m, method, q.c.taskError, q.now)
	return "executed", nil
}

// schedulePower starts a power action, replacing one not yet carried out. A
// cycle switches the server off at once and on again when it ends.
func (s *Server) schedulePower(m *machine, method, taskError string, now time.Time) {
	if taskError != "" {
		m.pending = nil
		return
	}
	if method == "setPowerCycle" {
		m.Power = "offline"
	}
	m.pending = &powerChange{method: method, at: now.Add(s.cfg.TaskDuration)}
}

// apply carries out a power action. Any reboot or power-off leaves the
// rescue system, which is a one-time network boot.
func (p *powerChange) apply(m *machine) {
	switch p.method {
	case "setPowerOff":
		m.Power, m.Rescue = "offline", false
	case "setPowerOn":
		m.Power = "online"
	case "setPowerReset", "setPowerCycle":
		m.Power, m.Rescue = "online", false
	}
}

// settle applies, in time order, the power change and the end of the
// install that are due by now. The lock must be held. State is settled
// when read instead of by timers, so that it always agrees with the clock.
func (s *Server) settle(m *machine, now time.Time) {
	for {
		powerDue := m.pending != nil && !m.pending.at.After(now)
		installDue := m.install != nil && !m.install.settled && !m.install.end().After(now)
		switch {
		case powerDue && (!installDue || !m.pending.at.After(m.install.end())):
			p := m.pending
			m.pending = nil
			p.apply(m)
		case installDue:
			s.finishInstall(m)
		default:
			return
		}
		m.updated = now
	}
}
