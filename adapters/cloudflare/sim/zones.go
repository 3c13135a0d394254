package sim

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Zone is a simulated zone with its records.
type Zone struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Status  string   `json:"status"`
	Records []Record `json:"records"`
}

type zone struct {
	id, name string
	created  time.Time
	records  map[string]Record // by id
}

// accountID is the one account every simulated zone belongs to.
const accountID = "5a1e0c1d2f3e4d5c6b7a8f9e0d1c2b3a"

// DemoZones are the zones `provisiond dev` starts with: a hosting zone with
// a panel, a game server's SRV record and mail, and an empty customer zone.
func DemoZones() []Zone {
	return []Zone{
		{Name: "hostfleet.test", Records: []Record{
			{Type: "A", Name: "panel", Content: "203.0.113.10", TTL: 1, Proxied: true},
			{Type: "AAAA", Name: "panel", Content: "2001:db8::10", TTL: 1, Proxied: true},
			{Type: "A", Name: "node1", Content: "203.0.113.21", TTL: 300},
			{Type: "CNAME", Name: "www", Content: "panel.hostfleet.test", TTL: 1, Proxied: true},
			{Type: "MX", Name: "@", Content: "mail.hostfleet.test", Priority: 10, TTL: 3600},
			{Type: "TXT", Name: "@", Content: "v=spf1 mx -all", TTL: 3600},
			{Type: "SRV", Name: "_minecraft._tcp.mc", TTL: 1,
				Data: &SRVData{Priority: 0, Weight: 5, Port: 25565, Target: "node1.hostfleet.test"}},
		}},
		{Name: "customer-example.test"},
	}
}

// AddZone adds an active zone and returns its id; a zone of that name that
// exists already keeps its id and records.
func (s *Server) AddZone(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range s.zones {
		if z.name == name {
			return z.id
		}
	}
	z := &zone{id: s.newID(), name: name, created: time.Now().UTC(), records: map[string]Record{}}
	s.zones = append(s.zones, z)
	return z.id
}

// Zones returns every zone with its records, in the order added.
func (s *Server) Zones() []Zone {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Zone, 0, len(s.zones))
	for _, z := range s.zones {
		out = append(out, Zone{ID: z.id, Name: z.name, Status: "active", Records: z.sorted()})
	}
	return out
}

// zone finds a zone by id; the lock must be held.
func (s *Server) zone(id string) *zone {
	for _, z := range s.zones {
		if z.id == id {
			return z
		}
	}
	return nil
}

// zoneFor resolves the path's zone id for the token: a malformed or
// unknown id cannot be routed, a zone outside the token's reach is an
// authentication error.
func (s *Server) zoneFor(r *http.Request, token, id string) (*zone, error) {
	if !idRE.MatchString(id) {
		return nil, noRoute(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(id)
	if z == nil {
		return nil, noRoute(r)
	}
	if !s.mayTouch(token, z.name) {
		return nil, newError(http.StatusForbidden, 10000, "Authentication error")
	}
	return z, nil
}

// sorted returns the zone's records by name, type and content; the lock
// must be held.
func (z *zone) sorted() []Record {
	out := make([]Record, 0, len(z.records))
	for _, rec := range z.records {
		out = append(out, rec.clone())
	}
	slices.SortFunc(out, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Content, b.Content), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// wire is the zone as the API shows it, with the fields of the SDK's Zone.
func (z *zone) wire() map[string]any {
	created := z.created.Format(time.RFC3339Nano)
	return map[string]any{
		"id": z.id, "name": z.name, "status": "active", "paused": false, "type": "full",
		"development_mode": 0, "name_servers": []string{"ada.ns.cloudflare.com", "bob.ns.cloudflare.com"},
		"original_name_servers": nil, "original_registrar": nil, "original_dnshost": nil,
		"created_on": created, "modified_on": created, "activated_on": created,
		"meta": map[string]any{"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3,
			"phishing_detected": false, "cdn_only": false, "dns_only": false, "foundation_dns": false},
		"owner":       map[string]any{"id": nil, "type": "user", "name": nil},
		"account":     map[string]any{"id": accountID, "name": "Simulated account"},
		"tenant":      map[string]any{"id": nil, "name": nil},
		"tenant_unit": map[string]any{"id": nil},
		"permissions": []string{"#dns_records:edit", "#dns_records:read", "#zone:read"},
		"plan": map[string]any{"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "price": 0,
			"currency": "USD", "frequency": "", "is_subscribed": false, "can_subscribe": false,
			"legacy_id": "free", "legacy_discount": false, "externally_managed": false},
		"vanity_name_servers": []string{}, "cname_suffix": "", "verification_key": "",
	}
}

// nameOps are the operators the zone list's name filter takes, as
// "name=contains:example".
var nameOps = map[string]func(name, v string) bool{
	"equal":                      strings.EqualFold,
	"not_equal":                  func(n, v string) bool { return !strings.EqualFold(n, v) },
	"starts_with":                func(n, v string) bool { return strings.HasPrefix(n, strings.ToLower(v)) },
	"ends_with":                  func(n, v string) bool { return strings.HasSuffix(n, strings.ToLower(v)) },
	"contains":                   func(n, v string) bool { return strings.Contains(n, strings.ToLower(v)) },
	"starts_with_case_sensitive": strings.HasPrefix,
	"ends_with_case_sensitive":   strings.HasSuffix,
	"contains_case_sensitive":    strings.Contains,
}

// zonesList answers GET /zones with the filters name (and its operators),
// status, account.id, account.name, match, order, direction, page and
// per_page (5 to 50, default 20). A token sees only the zones it reaches.
func (s *Server) zonesList(r *http.Request, c *call) (any, *resultInfo, error) {
	q := r.URL.Query()
	var filters []func(*zone) bool
	if v := q.Get("name"); v != "" {
		match := nameOps["equal"]
		if op, arg, ok := strings.Cut(v, ":"); ok && nameOps[op] != nil {
			match, v = nameOps[op], arg
		}
		filters = append(filters, func(z *zone) bool { return match(z.name, v) })
	}
	if v := q.Get("status"); v != "" {
		filters = append(filters, func(*zone) bool { return v == "active" })
	}
	if v := q.Get("account.id"); v != "" {
		filters = append(filters, func(*zone) bool { return v == accountID })
	}
	if v := q.Get("account.name"); v != "" {
		filters = append(filters, func(*zone) bool { return strings.EqualFold(v, "Simulated account") })
	}
	anyOf := q.Get("match") == "any"
	s.mu.Lock()
	var found []*zone
	for _, z := range s.zones {
		if s.mayTouch(c.token, z.name) && matches(z, filters, anyOf) {
			found = append(found, z)
		}
	}
	s.mu.Unlock()
	// Every zone is active, so only the name orders them.
	if q.Get("order") == "name" || q.Get("direction") != "" {
		slices.SortStableFunc(found, func(a, b *zone) int { return cmp.Compare(a.name, b.name) })
	}
	if q.Get("direction") == "desc" {
		slices.Reverse(found)
	}
	from, to, info := paginate(len(found), intParam(r, "page", 1, 1, 1<<30), intParam(r, "per_page", 20, 5, 50))
	out := make([]map[string]any, 0, to-from)
	for _, z := range found[from:to] {
		out = append(out, z.wire())
	}
	return out, info, nil
}

// matches applies filters to v: all of them, or any one with anyOf set.
func matches[T any](v T, filters []func(T) bool, anyOf bool) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if f(v) == anyOf {
			return anyOf
		}
	}
	return !anyOf
}

func (s *Server) zonesGet(_ *http.Request, c *call) (any, *resultInfo, error) {
	return c.zone.wire(), nil, nil
}
