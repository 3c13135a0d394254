package sim

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// Data is state to load into a Server: customers and domains of the
// account, names registered elsewhere and premium names.
type Data struct {
	Customers []Customer
	Domains   []Domain
	// Taken are full names ("example.com") registered at other
	// registrars: check says "active" and registering them fails.
	Taken []string
	// Premium maps full names to their registration price in EUR, which
	// a registration must accept with accept_premium_fee.
	Premium map[string]float64
}

// DemoData is what `provisiond dev` starts with: two customers, a domain
// of each, a few taken and two premium names.
func DemoData() Data {
	return Data{
		Customers: []Customer{
			{Handle: "JD100001-NL", Name: Name{FirstName: "Jan", LastName: "Dekker"}, Email: "jan@example.nl",
				Phone:   Phone{CountryCode: "+31", AreaCode: "20", SubscriberNumber: "5550101"},
				Address: Address{Street: "Keizersgracht", Number: "100", Zipcode: "1015 AA", City: "Amsterdam", Country: "NL"}},
			{Handle: "AS100002-DE", Name: Name{FirstName: "Anna", LastName: "Schmidt"}, CompanyName: "Schmidt Hosting GmbH",
				Email: "anna@example.de", Phone: Phone{CountryCode: "+49", AreaCode: "30", SubscriberNumber: "5550102"},
				Address: Address{Street: "Friedrichstraße", Number: "12", Zipcode: "10117", City: "Berlin", Country: "DE"}},
		},
		Domains: []Domain{
			{Name: "hostfleet-demo", Extension: "com", OwnerHandle: "JD100001-NL", AdminHandle: "JD100001-NL",
				TechHandle: "JD100001-NL", BillingHandle: "JD100001-NL", NSGroup: "dns-openprovider", IsLocked: true},
			{Name: "schmidt-hosting", Extension: "de", OwnerHandle: "AS100002-DE", AdminHandle: "AS100002-DE",
				TechHandle: "AS100002-DE", Autorenew: "on",
				NameServers: []NameServer{{Name: "ns1.schmidt-hosting.de", IP: "192.0.2.53", SeqNr: 1}, {Name: "ns2.example.net", SeqNr: 2}}},
		},
		Taken:   []string{"example.com", "google.com", "taken-domain.com"},
		Premium: map[string]float64{"cloud.io": 2499, "vps.dev": 899},
	}
}

// Load adds d to the account. Customers keep a given handle (or get one);
// domains get an id, ACT status, dates, an auth code and the
// dns-openprovider group where they lack them.
func (s *Server) Load(d Data) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range d.Customers {
		s.add(c)
	}
	for _, dom := range d.Domains {
		s.addDomain(dom)
	}
	for _, name := range d.Taken {
		s.taken[strings.ToLower(name)] = true
	}
	for name, price := range d.Premium {
		s.premium[strings.ToLower(name)] = price
	}
}

// addDomain stores d with its defaults filled in; the lock must be held.
func (s *Server) addDomain(d Domain) {
	if d.ID == 0 {
		d.ID = s.nextID
	}
	s.nextID = max(s.nextID, d.ID+1)
	d.Name, d.Extension = strings.ToLower(d.Name), strings.ToLower(d.Extension)
	if d.Status == "" {
		d.Status = "ACT"
	}
	if d.Period == 0 {
		d.Period = 1
	}
	if d.Autorenew == "" {
		d.Autorenew = "default"
	}
	if d.OrderDate.IsZero() {
		d.OrderDate = time.Now()
	}
	if d.ActiveDate.IsZero() && d.Status == "ACT" {
		d.ActiveDate = d.OrderDate
	}
	if d.ExpirationDate.IsZero() {
		d.ExpirationDate = d.OrderDate.AddDate(d.Period, 0, 0)
	}
	if d.AuthCode == "" {
		d.AuthCode = s.newAuthCode()
	}
	if len(d.NameServers) == 0 && d.NSGroup == "" {
		d.NSGroup = "dns-openprovider"
	}
	if hosts, ok := nsGroups[d.NSGroup]; ok {
		d.NameServers = groupServers(hosts)
	} else {
		d.NameServers = slices.Clone(d.NameServers)
	}
	s.domains[d.ID] = &d
	if d.Status == "REQ" {
		s.register(&d, "")
	}
}

// AddTakenDomain marks a full name ("example.com") as registered at
// another registrar.
func (s *Server) AddTakenDomain(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken[strings.ToLower(name)] = true
}

// Domain returns a copy of the account's domain with that full name
// ("example.com").
func (s *Server) Domain(name string) (Domain, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.byName(strings.ToLower(name))
	if d == nil {
		return Domain{}, false
	}
	out := *d
	out.NameServers = slices.Clone(d.NameServers)
	return out, true
}

// Domains returns copies of the account's domains, ordered by id.
func (s *Server) Domains() []Domain {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Domain, 0, len(s.domains))
	for _, id := range slices.Sorted(maps.Keys(s.domains)) {
		d := *s.domains[id]
		d.NameServers = slices.Clone(d.NameServers)
		out = append(out, d)
	}
	return out
}

// Customers returns copies of the account's customers, ordered by handle.
func (s *Server) Customers() []Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Customer{}
	for _, c := range s.sortedCustomers() {
		out = append(out, *c)
	}
	return out
}

// control registers the /_sim/ endpoints: simkit's calls and faults, the
// domains and customers, and taken names.
func (s *Server) control() {
	s.Control(s.mux)
	s.mux.HandleFunc("GET /_sim/domains", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Domains())
	})
	s.mux.HandleFunc("GET /_sim/customers", func(w http.ResponseWriter, r *http.Request) {
		simkit.WriteJSON(w, http.StatusOK, s.Customers())
	})
	s.mux.HandleFunc("POST /_sim/taken", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Domain string `json:"domain"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || !strings.Contains(in.Domain, ".") {
			http.Error(w, `want {"domain":"example.com"}`, http.StatusBadRequest)
			return
		}
		s.AddTakenDomain(in.Domain)
		w.WriteHeader(http.StatusNoContent)
	})
}
