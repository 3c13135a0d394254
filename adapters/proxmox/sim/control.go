package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// faultJSON is a Fault on the control endpoint, with durations as Go
// duration strings ("250ms") so that curl users can write them.
type faultJSON struct {
	Op         string  `json:"op"`
	VMID       int     `json:"vmid"`
	Times      int     `json:"times"`
	Latency    string  `json:"latency"`
	Status     int     `json:"status"`
	Message    string  `json:"message"`
	RetryAfter string  `json:"retryAfter"`
	Drop       bool    `json:"drop"`
	Hang       bool    `json:"hang"`
	TaskError  string  `json:"taskError"`
	Rate       float64 `json:"rate"`
}

func durations(vals ...string) ([]time.Duration, error) {
	out := make([]time.Duration, len(vals))
	for i, v := range vals {
		if v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// control registers the /_sim/ endpoints.
func (s *Server) control() {
	s.mux.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.Calls()) })
	s.mux.HandleFunc("DELETE /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("GET /_sim/vms", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.VMs()) })
	s.mux.HandleFunc("POST /_sim/vms", func(w http.ResponseWriter, r *http.Request) {
		var vm VM
		if err := json.NewDecoder(r.Body).Decode(&vm); err != nil || vm.Node == "" || vm.VMID < 100 {
			http.Error(w, "want a VM as JSON with node and vmid (100 or more)", http.StatusBadRequest)
			return
		}
		s.AddVM(vm)
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f faultJSON
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, "bad fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		d, err := durations(f.Latency, f.RetryAfter)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad duration: %v", err), http.StatusBadRequest)
			return
		}
		s.Inject(Fault{Op: f.Op, VMID: f.VMID, Times: f.Times, Latency: d[0], Status: f.Status, Message: f.Message,
			RetryAfter: d[1], Drop: f.Drop, Hang: f.Hang, TaskError: f.TaskError})
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("POST /_sim/random", func(w http.ResponseWriter, r *http.Request) {
		var f faultJSON
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil || f.Rate < 0 || f.Rate > 1 {
			http.Error(w, `want {"rate":0.1,"status":503,"latency":"100ms"}`, http.StatusBadRequest)
			return
		}
		d, err := durations(f.Latency)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad duration: %v", err), http.StatusBadRequest)
			return
		}
		s.SetRandomFaults(RandomFaults{Rate: f.Rate, Status: f.Status, Latency: d[0]})
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
