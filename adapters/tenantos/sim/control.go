package sim

import (
	"encoding/json"
	"net/http"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// control registers the /_sim/ endpoints: simkit's calls and faults, and
// the servers.
func (s *Server) control() {
	s.Control(s.mux)
	s.mux.HandleFunc("GET /_sim/servers", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Servers())
	})
	s.mux.HandleFunc("POST /_sim/servers", func(w http.ResponseWriter, r *http.Request) {
		var m Machine
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.ID <= 0 {
			http.Error(w, "want a server as JSON with a positive id", http.StatusBadRequest)
			return
		}
		s.AddServer(m)
		w.WriteHeader(http.StatusNoContent)
	})
}
