package sim

import (
	"net/http"
	"strings"
	"time"
)

// agentPing answers POST …/agent/ping as PVE does: 500 when the agent is not
// enabled in the configuration, when the VM is not running, and while the
// guest's agent does not answer — the first task duration after the VM
// started (it is booting), or always for a guest without one (NoAgent).
func (s *Server) agentPing(_ *http.Request, c *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	switch {
	case !agentEnabled(st.Config["agent"]):
		return nil, serverError("No QEMU guest agent configured")
	case st.Status != "running":
		return nil, serverError("VM %d not running", st.VMID)
	case st.NoAgent || st.Paused || time.Since(st.started) < s.cfg.TaskDuration:
		return nil, serverError("QEMU guest agent is not running")
	}
	return map[string]any{"result": map[string]any{}}, nil
}

// agentEnabled reads PVE's agent property: "1", or "1,…", or
// "enabled=1,…".
func agentEnabled(v string) bool {
	for _, part := range strings.Split(v, ",") {
		if part == "1" || part == "enabled=1" {
			return true
		}
	}
	return false
}
