package sim

import (
	"encoding/json"
	"net/http"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// control registers the /_sim/ endpoints: simkit's calls and faults, and
// the zones with their records.
func (s *Server) control() {
	s.Control(s.mux)
	s.mux.HandleFunc("GET /_sim/zones", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Zones())
	})
	s.mux.HandleFunc("POST /_sim/zones", func(w http.ResponseWriter, r *http.Request) {
		var z Zone
		if err := json.NewDecoder(r.Body).Decode(&z); err != nil || z.Name == "" {
			http.Error(w, `want a zone as JSON: {"name":"example.com","records":[{"type":"A","name":"www","content":"192.0.2.1"}]}`, http.StatusBadRequest)
			return
		}
		id := s.AddZone(z.Name)
		for _, rec := range z.Records {
			if _, err := s.AddRecord(id, rec); err != nil {
				http.Error(w, "record "+rec.Name+": "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		simkit.WriteJSON(w, http.StatusOK, map[string]string{"id": id})
	})
}
