package sim

import (
	"net/http"
	"slices"
	"time"
)

// Fault is a scripted misbehaviour for calls matching Op and VMID.
type Fault struct {
	// Op is the operation name as in Call.Op ("start", "status.current",
	// "task.status", ...); empty matches every operation.
	Op string
	// VMID limits the fault to one VM; zero matches any.
	VMID int
	// Times is how many matching calls the fault hits; zero or less means
	// every one until ClearFaults.
	Times int

	// Latency delays the answer.
	Latency time.Duration
	// Status, when 400 or more, refuses the call with that status and
	// Message (default the status text) as the reason phrase, before the
	// request is carried out.
	Status  int
	Message string
	// RetryAfter is sent as a Retry-After header with Status.
	RetryAfter time.Duration
	// Drop carries the request out, then closes the connection halfway
	// through the answer: the client cannot know whether it happened.
	Drop bool
	// Hang never answers; the request ends when the client gives up.
	Hang bool
	// TaskError makes the task the call starts end with this exit status
	// instead of OK, without the state change it would have made.
	TaskError string
}

// RandomFaults fail a share of all API calls, drawn from the seeded source.
type RandomFaults struct {
	// Rate is the share of calls hit, 0 to 1.
	Rate float64
	// Status is the answer of a hit call; default 503.
	Status int
	// Latency delays every call hit.
	Latency time.Duration
}

// Inject adds scripted faults; they are matched in the order added.
func (s *Server) Inject(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		s.faults = append(s.faults, &f)
	}
}

// ClearFaults removes every scripted and random fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.random = RandomFaults{}
}

// SetRandomFaults replaces the random fault settings.
func (s *Server) SetRandomFaults(rf RandomFaults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.random = rf
}

// fault returns what should go wrong with this call: the first matching
// scripted fault, else possibly a random one, else the zero Fault.
func (s *Server) fault(op string, vmid int) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if (f.Op != "" && f.Op != op) || (f.VMID != 0 && f.VMID != vmid) {
			continue
		}
		hit := *f
		if f.Times > 0 {
			if f.Times--; f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return hit
	}
	if rf := s.random; rf.Rate > 0 && s.rng.Float64() < rf.Rate {
		status := rf.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		return Fault{Status: status, Latency: rf.Latency}
	}
	return Fault{}
}

// Call is one API request as it arrived.
type Call struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Op names the operation: "start", "shutdown", "status.current", ...
	Op   string `json:"op"`
	Node string `json:"node,omitempty"`
	VMID int    `json:"vmid,omitempty"`
	// Status is the HTTP status answered; 0 while in flight or when the
	// client gave up first.
	Status int `json:"status"`
}

func (s *Server) logCall(r *http.Request, op, node string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, Call{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Op: op, Node: node})
	return len(s.calls) - 1
}

// Calls returns the calls that arrived, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CountCalls counts the calls of op that arrived for vmid (any VM when
// zero), whatever their answer.
func (s *Server) CountCalls(op string, vmid int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Op == op && (vmid == 0 || c.VMID == vmid) {
			n++
		}
	}
	return n
}

// ResetCalls empties the call log.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}
