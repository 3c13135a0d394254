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
		var g GameServer
		if err := json.NewDecoder(r.Body).Decode(&g); err != nil {
			http.Error(w, "want a server as JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		added, err := s.AddServer(g)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		simkit.WriteJSON(w, http.StatusCreated, added)
	})
}
