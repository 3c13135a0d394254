package sim

import (
	"encoding/json"
	"net/http"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// control registers the /_sim/ endpoints: simkit's calls and faults, and
// the VMs.
func (s *Server) control() {
	s.Control(s.mux)
	s.mux.HandleFunc("GET /_sim/vms", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.VMs())
	})
	s.mux.HandleFunc("POST /_sim/vms", func(w http.ResponseWriter, r *http.Request) {
		var vm VM
		if err := json.NewDecoder(r.Body).Decode(&vm); err != nil || vm.Node == "" || vm.VMID < 100 {
			http.Error(w, "want a VM as JSON with node and vmid (100 or more)", http.StatusBadRequest)
			return
		}
		s.AddVM(vm)
		w.WriteHeader(http.StatusNoContent)
	})
}
