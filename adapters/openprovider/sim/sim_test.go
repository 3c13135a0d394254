package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/openprovider/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const (
	username = "reseller"
	password = "s3cret"
	regTime  = 30 * time.Millisecond
)

// client is a tiny v1beta client: JSON bodies, the Bearer token, the
// {code, desc, data} envelope.
type client struct {
	t     *testing.T
	base  string
	token string
	http  *http.Client
}

// reply is an answer in the envelope, with its HTTP status and headers.
type reply struct {
	status int
	header http.Header
	Code   int             `json:"code"`
	Desc   string          `json:"desc"`
	Data   json.RawMessage `json:"data"`
}

// newSim serves a simulator loaded with the demo data and returns it with
// a logged-in client.
func newSim(t *testing.T, cfg sim.Config) (*sim.Server, *client) {
	t.Helper()
	cfg.Username, cfg.Password, cfg.Seed = username, password, 1
	if cfg.RegistrationDuration == 0 {
		cfg.RegistrationDuration = regTime
	}
	s := sim.New(cfg)
	s.Load(sim.DemoData())
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	c := &client{t: t, base: ts.URL, http: &http.Client{Timeout: 2 * time.Second}}
	c.login()
	return s, c
}

// send sends a request; body is JSON-encoded unless it is a string.
func (c *client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/v1beta"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.http.Do(req)
}

// call sends a request and reads the envelope.
func (c *client) call(method, path string, body any) reply {
	c.t.Helper()
	res, err := c.send(context.Background(), method, path, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		c.t.Fatalf("%s %s: body %q: %v", method, path, raw, err)
	}
	r.status, r.header = res.StatusCode, res.Header
	return r
}

// ok sends a request that must succeed and decodes its data into out.
func (c *client) ok(method, path string, body, out any) {
	c.t.Helper()
	r := c.call(method, path, body)
	if r.status != http.StatusOK || r.Code != 0 {
		c.t.Fatalf("%s %s: %d code %d %s", method, path, r.status, r.Code, r.Desc)
	}
	if out != nil {
		if err := json.Unmarshal(r.Data, out); err != nil {
			c.t.Fatalf("%s %s: data %s: %v", method, path, r.Data, err)
		}
	}
}

func (c *client) login() {
	c.t.Helper()
	c.token = ""
	var data struct {
		Token string `json:"token"`
	}
	c.ok("POST", "/auth/login", map[string]string{"username": username, "password": password, "ip": "0.0.0.0"}, &data)
	c.token = data.Token
}

// domainOut is the part of a v1beta domain the tests read.
type domainOut struct {
	ID     int    `json:"id"`
	Status string `json:"status"`
	Domain struct {
		Name      string `json:"name"`
		Extension string `json:"extension"`
	} `json:"domain"`
	OwnerHandle    string                  `json:"owner_handle"`
	AdminHandle    string                  `json:"admin_handle"`
	NameServers    []struct{ Name string } `json:"name_servers"`
	NSGroup        string                  `json:"ns_group"`
	Autorenew      string                  `json:"autorenew"`
	IsLocked       bool                    `json:"is_locked"`
	DNSSEC         string                  `json:"dnssec"`
	IsPremium      bool                    `json:"is_premium"`
	AuthCode       string                  `json:"auth_code"`
	ActiveDate     string                  `json:"active_date"`
	ExpirationDate string                  `json:"expiration_date"`
}

func (d domainOut) nameServers() string {
	var names []string
	for _, ns := range d.NameServers {
		names = append(names, ns.Name)
	}
	return strings.Join(names, ",")
}

func (c *client) domain(id int) domainOut {
	c.t.Helper()
	var d domainOut
	c.ok("GET", fmt.Sprintf("/domains/%d", id), nil, &d)
	return d
}

// waitStatus polls the domain until it has the status.
func (c *client) waitStatus(id int, want string) domainOut {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if d := c.domain(id); d.Status == want {
			return d
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("domain %d never became %s", id, want)
	return domainOut{}
}

// demoID is the id of a demo domain.
func demoID(t *testing.T, s *sim.Server, name string) int {
	t.Helper()
	d, ok := s.Domain(name)
	if !ok {
		t.Fatalf("no demo domain %s", name)
	}
	return d.ID
}

const owner = "JD100001-NL" // a demo customer

// registration is a valid POST /domains body for name.ext, with changes
// applied on top.
func registration(name, ext string, changes map[string]any) map[string]any {
	m := map[string]any{
		"domain":       map[string]string{"name": name, "extension": ext},
		"owner_handle": owner, "admin_handle": owner, "tech_handle": owner, "billing_handle": owner,
		"period": 1, "autorenew": "off",
		"name_servers": []map[string]string{{"name": "ns1.example.net"}, {"name": "ns2.example.net"}},
	}
	for k, v := range changes {
		m[k] = v
	}
	return m
}

// customer is a valid POST /customers body, with changes applied on top of
// its top level.
func customer(first, last string, changes map[string]any) map[string]any {
	m := map[string]any{
		"name":    map[string]string{"first_name": first, "last_name": last},
		"email":   strings.ToLower(first) + "@example.org",
		"phone":   map[string]string{"country_code": "+31", "area_code": "20", "subscriber_number": "5551234"},
		"address": map[string]string{"street": "Main", "number": "1", "zipcode": "1000 AA", "city": "Amsterdam", "country": "NL"},
	}
	for k, v := range changes {
		m[k] = v
	}
	return m
}

func phone(cc, area, number string) map[string]string {
	return map[string]string{"country_code": cc, "area_code": area, "subscriber_number": number}
}

func address(street, number, zip, city, country string) map[string]string {
	return map[string]string{"street": street, "number": number, "zipcode": zip, "city": city, "country": country}
}

func TestLoginGivesAWorkingToken(t *testing.T) {
	_, c := newSim(t, sim.Config{})
	c.token = ""
	var data struct {
		Token      string `json:"token"`
		ResellerID int    `json:"reseller_id"`
	}
	c.ok("POST", "/auth/login", map[string]string{"username": username, "password": password, "ip": "0.0.0.0"}, &data)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(data.Token) || data.ResellerID == 0 {
		t.Fatalf("login data = %+v, want a 32-hex token and a reseller id", data)
	}
	c.token = data.Token
	c.ok("GET", "/domains", nil, nil)
}

func TestAuthFailuresAreCode196(t *testing.T) {
	tests := []struct {
		name, token, method, path string
		body                      any
		wantStatus                int
	}{
		{"wrong password at login", "", "POST", "/auth/login", map[string]string{"username": username, "password": "nope"}, 500},
		{"unknown user at login", "", "POST", "/auth/login", map[string]string{"username": "someone", "password": password}, 500},
		{"no token", "", "GET", "/domains", nil, 401},
		{"unknown token", "0123456789abcdef0123456789abcdef", "GET", "/domains", nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newSim(t, sim.Config{})
			c.token = tt.token
			r := c.call(tt.method, tt.path, tt.body)
			if r.status != tt.wantStatus || r.Code != 196 || r.Desc != "Authentication/Authorization Failed" {
				t.Errorf("got %d code %d %q, want %d code 196", r.status, r.Code, r.Desc, tt.wantStatus)
			}
		})
	}
}

func TestExpiredTokenNeedsANewLogin(t *testing.T) {
	_, c := newSim(t, sim.Config{TokenLifetime: 50 * time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	r := c.call("GET", "/domains", nil)
	for r.status == http.StatusOK && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		r = c.call("GET", "/domains", nil)
	}
	if r.status != http.StatusUnauthorized || r.Code != 196 {
		t.Fatalf("after the lifetime: %d code %d, want 401 code 196", r.status, r.Code)
	}
	c.login()
	c.ok("GET", "/domains", nil, nil)
}

func TestCheckTellsFreeFromActive(t *testing.T) {
	_, c := newSim(t, sim.Config{})
	var data struct {
		Results []struct {
			Domain    string `json:"domain"`
			Status    string `json:"status"`
			IsPremium bool   `json:"is_premium"`
			Premium   struct {
				Price struct{ Create float64 } `json:"price"`
			} `json:"premium"`
			Price struct {
				Reseller struct {
					Price    float64 `json:"price"`
					Currency string  `json:"currency"`
				} `json:"reseller"`
			} `json:"price"`
		} `json:"results"`
	}
	c.ok("POST", "/domains/check", map[string]any{"with_price": true, "domains": []map[string]string{
		{"name": "brand-new-name", "extension": "com"},
		{"name": "hostfleet-demo", "extension": "com"},
		{"name": "taken-domain", "extension": "com"},
		{"name": "cloud", "extension": "io"},
	}}, &data)
	tests := []struct {
		domain, status string
		premium        float64
	}{
		{"brand-new-name.com", "free", 0},
		{"hostfleet-demo.com", "active", 0}, // registered here
		{"taken-domain.com", "active", 0},   // registered elsewhere
		{"cloud.io", "free", 2499},
	}
	if len(data.Results) != len(tests) {
		t.Fatalf("%d results, want %d", len(data.Results), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			r := data.Results[i]
			if r.Domain != tt.domain || r.Status != tt.status {
				t.Errorf("got %s %s, want %s %s", r.Domain, r.Status, tt.domain, tt.status)
			}
			if r.IsPremium != (tt.premium > 0) || r.Premium.Price.Create != tt.premium {
				t.Errorf("premium %v at %v, want %v", r.IsPremium, r.Premium.Price.Create, tt.premium)
			}
			if r.Price.Reseller.Price <= 0 || r.Price.Reseller.Currency != "EUR" {
				t.Errorf("price %+v, want a EUR price", r.Price.Reseller)
			}
		})
	}
}

func TestRefusalsUseTheRealErrorShape(t *testing.T) {
	tests := []struct {
		name, method, path string
		body               any
		wantStatus         int
		wantCode           int
	}{
		// Registration.
		{"duplicate domain", "POST", "/domains", registration("hostfleet-demo", "com", nil), 400, 346},
		{"domain taken elsewhere", "POST", "/domains", registration("taken-domain", "com", nil), 400, 311},
		{"premium without the fee", "POST", "/domains", registration("cloud", "io", nil), 400, 379},
		{"premium with too low a fee", "POST", "/domains", registration("cloud", "io", map[string]any{"accept_premium_fee": 10}), 400, 379},
		{"no owner handle", "POST", "/domains", registration("fresh", "com", map[string]any{"owner_handle": ""}), 400, 330},
		{"unknown owner handle", "POST", "/domains", registration("fresh", "com", map[string]any{"owner_handle": "ZZ999999-NL"}), 400, 331},
		{"no admin handle", "POST", "/domains", registration("fresh", "com", map[string]any{"admin_handle": ""}), 400, 332},
		{"unknown tech handle", "POST", "/domains", registration("fresh", "com", map[string]any{"tech_handle": "ZZ999999-NL"}), 400, 335},
		{"unknown billing handle", "POST", "/domains", registration("fresh", "com", map[string]any{"billing_handle": "ZZ999999-NL"}), 400, 373},
		{"extension in the name", "POST", "/domains", registration("fresh.com", "com", nil), 400, 303},
		{"leading dash", "POST", "/domains", registration("-fresh", "com", nil), 400, 304},
		{"trailing dash", "POST", "/domains", registration("fresh-", "com", nil), 400, 305},
		{"name too long", "POST", "/domains", registration(strings.Repeat("a", 64), "com", nil), 400, 302},
		{"no extension", "POST", "/domains", registration("fresh", "", nil), 400, 306},
		{"unknown extension", "POST", "/domains", registration("fresh", "xyz", nil), 400, 307},
		{"no period", "POST", "/domains", registration("fresh", "com", map[string]any{"period": 0}), 400, 315},
		{"period too long", "POST", "/domains", registration("fresh", "com", map[string]any{"period": 11}), 400, 316},
		{"period not a number", "POST", "/domains", registration("fresh", "com", map[string]any{"period": "two"}), 400, 3},
		{"bad autorenew", "POST", "/domains", registration("fresh", "com", map[string]any{"autorenew": "yes"}), 400, 347},
		{"one nameserver", "POST", "/domains", registration("fresh", "com", map[string]any{"name_servers": []map[string]string{{"name": "ns1.example.net"}}}), 400, 221},
		{"bad nameserver name", "POST", "/domains", registration("fresh", "com", map[string]any{"name_servers": []map[string]string{{"name": "ns1"}, {"name": "ns2.example.net"}}}), 400, 226},
		{"double nameserver", "POST", "/domains", registration("fresh", "com", map[string]any{"name_servers": []map[string]string{{"name": "ns1.example.net"}, {"name": "NS1.example.net"}}}), 400, 222},
		{"bad nameserver IPv4", "POST", "/domains", registration("fresh", "com", map[string]any{"name_servers": []map[string]string{{"name": "ns1.example.net", "ip": "300.1.1.1"}, {"name": "ns2.example.net"}}}), 400, 227},
		{"glue without an address", "POST", "/domains", registration("fresh", "com", map[string]any{"name_servers": []map[string]string{{"name": "ns1.fresh.com"}, {"name": "ns2.example.net"}}}), 400, 231},
		{"unknown nameserver group", "POST", "/domains", registration("fresh", "com", map[string]any{"name_servers": nil, "ns_group": "nope"}), 400, 201},
		{"malformed JSON", "POST", "/domains", `{"domain":`, 400, 3},
		// Domain lookups and changes.
		{"non-numeric domain id", "GET", "/domains/abc", nil, 400, 3},
		{"unknown domain id", "GET", "/domains/1", nil, 404, 320},
		{"lock where the registry has none", "PUT", "/domains/{de}", map[string]any{"is_locked": true}, 400, 329},
		{"bad autorenew on update", "PUT", "/domains/{com}", map[string]any{"autorenew": "always"}, 400, 347},
		{"unknown admin on update", "PUT", "/domains/{com}", map[string]any{"admin_handle": "ZZ999999-NL"}, 400, 333},
		{"renewal past ten years", "POST", "/domains/{com}/renew", map[string]any{"period": 10}, 400, 324},
		{"renewal without period", "POST", "/domains/{com}/renew", map[string]any{}, 400, 315},
		{"authcode of an unknown domain", "GET", "/domains/1/authcode", nil, 404, 320},
		// Availability.
		{"check without domains", "POST", "/domains/check", map[string]any{"domains": []any{}}, 400, 300},
		{"check of a bad name", "POST", "/domains/check", map[string]any{"domains": []map[string]string{{"name": "a_b", "extension": "com"}}}, 400, 303},
		// Customers.
		{"customer without first name", "POST", "/customers", customer("", "Roe", nil), 400, 102},
		{"customer without last name", "POST", "/customers", customer("Jane", "", nil), 400, 105},
		{"customer without email", "POST", "/customers", customer("Jane", "Roe", map[string]any{"email": ""}), 400, 145},
		{"customer with bad email", "POST", "/customers", customer("Jane", "Roe", map[string]any{"email": "jane.example.org"}), 400, 146},
		{"phone without country code", "POST", "/customers", customer("Jane", "Roe", map[string]any{"phone": phone("", "20", "5551234")}), 400, 130},
		{"phone country code without plus", "POST", "/customers", customer("Jane", "Roe", map[string]any{"phone": phone("31", "20", "5551234")}), 400, 131},
		{"phone area code with letters", "POST", "/customers", customer("Jane", "Roe", map[string]any{"phone": phone("+31", "2O", "5551234")}), 400, 133},
		{"phone number in one field", "POST", "/customers", customer("Jane", "Roe", map[string]any{"phone": phone("+31", "20", "+31 20 555 1234")}), 400, 135},
		{"address without street", "POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("", "1", "1000 AA", "Amsterdam", "NL")}), 400, 110},
		{"address without number", "POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("Main", "", "1000 AA", "Amsterdam", "NL")}), 400, 112},
		{"address without zipcode", "POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("Main", "1", "", "Amsterdam", "NL")}), 400, 115},
		{"address without city", "POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("Main", "1", "1000 AA", "", "NL")}), 400, 117},
		{"address without country", "POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("Main", "1", "1000 AA", "Amsterdam", "")}), 400, 120},
		{"address with a country name", "POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("Main", "1", "1000 AA", "Amsterdam", "Netherlands")}), 400, 121},
		{"update with bad email", "PUT", "/customers/" + owner, map[string]any{"email": "nope"}, 400, 146},
		{"unknown handle", "GET", "/customers/ZZ999999-NL", nil, 404, 176},
		{"malformed handle", "GET", "/customers/jan", nil, 400, 195},
		{"customer a domain uses", "DELETE", "/customers/" + owner, nil, 400, 6200},
		// Routing.
		{"unknown endpoint", "GET", "/nothing-here", nil, 404, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newSim(t, sim.Config{})
			path := strings.NewReplacer(
				"{com}", fmt.Sprint(demoID(t, s, "hostfleet-demo.com")),
				"{de}", fmt.Sprint(demoID(t, s, "schmidt-hosting.de")),
			).Replace(tt.path)
			r := c.call(tt.method, path, tt.body)
			if r.status != tt.wantStatus || r.Code != tt.wantCode || r.Desc == "" {
				t.Errorf("got %d code %d %q, want %d code %d with a desc", r.status, r.Code, r.Desc, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

// register registers name.ext for the demo owner and returns its id.
func (c *client) register(name, ext string, changes map[string]any) (int, string) {
	c.t.Helper()
	var data struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
	}
	c.ok("POST", "/domains", registration(name, ext, changes), &data)
	return data.ID, data.Status
}

func TestRegistrationIsRequestedThenActive(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	var created struct {
		ID             int    `json:"id"`
		Status         string `json:"status"`
		AuthCode       string `json:"auth_code"`
		ExpirationDate string `json:"expiration_date"`
	}
	c.ok("POST", "/domains", registration("fresh-name", "com", map[string]any{"period": 2}), &created)
	if created.ID == 0 || created.Status != "REQ" || created.AuthCode == "" {
		t.Fatalf("created = %+v, want an id, status REQ and an auth code", created)
	}
	if want := time.Now().AddDate(2, 0, 0).UTC().Format("2006-01-02"); !strings.HasPrefix(created.ExpirationDate, want) {
		t.Errorf("expiration %q, want two years from now (%s)", created.ExpirationDate, want)
	}
	if d := c.domain(created.ID); d.Status != "REQ" || d.ActiveDate != "" {
		t.Errorf("right after: %s, active %q; want REQ, not active yet", d.Status, d.ActiveDate)
	}
	d := c.waitStatus(created.ID, "ACT")
	if d.ActiveDate == "" || d.OwnerHandle != owner || d.nameServers() != "ns1.example.net,ns2.example.net" {
		t.Errorf("active domain = %+v", d)
	}
	var list struct {
		Results []domainOut `json:"results"`
		Total   int         `json:"total"`
	}
	c.ok("GET", "/domains?full_name=fresh-name.com", nil, &list)
	if list.Total != 1 || len(list.Results) != 1 || list.Results[0].ID != created.ID {
		t.Errorf("listing by full_name = %+v", list)
	}
	if got, ok := s.Domain("fresh-name.com"); !ok || got.Status != "ACT" {
		t.Errorf("Domain() = %+v, %v; want it ACT", got, ok)
	}
}

func TestPremiumDomainRegistersWithTheFeeAccepted(t *testing.T) {
	_, c := newSim(t, sim.Config{})
	id, _ := c.register("cloud", "io", map[string]any{"accept_premium_fee": 2499})
	if d := c.domain(id); !d.IsPremium {
		t.Errorf("is_premium = false, want true")
	}
}

func TestActionsWaitForTheRegistry(t *testing.T) {
	tests := []struct{ name, method, path string }{
		{"update", "PUT", "/domains/%d"},
		{"delete", "DELETE", "/domains/%d"},
		{"renew", "POST", "/domains/%d/renew"},
		{"authcode", "GET", "/domains/%d/authcode"},
		{"authcode reset", "POST", "/domains/%d/authcode/reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newSim(t, sim.Config{RegistrationDuration: time.Hour})
			id, _ := c.register("slow", "com", nil)
			r := c.call(tt.method, fmt.Sprintf(tt.path, id), map[string]any{"period": 1, "autorenew": "on"})
			if r.status != 400 || r.Code != 366 {
				t.Errorf("while REQ: %d code %d %q, want 400 code 366", r.status, r.Code, r.Desc)
			}
		})
	}
}

func TestUpdateDomainChangesState(t *testing.T) {
	tests := []struct {
		name string
		body map[string]any
		got  func(domainOut) any
		want any
	}{
		{"nameservers", map[string]any{"name_servers": []map[string]string{{"name": "ns1.new.net"}, {"name": "ns2.new.net"}}},
			func(d domainOut) any { return d.nameServers() + "|" + d.NSGroup }, "ns1.new.net,ns2.new.net|"},
		{"nameserver group", map[string]any{"ns_group": "dns-openprovider"},
			func(d domainOut) any { return d.nameServers() }, "ns1.openprovider.nl,ns2.openprovider.be,ns3.openprovider.eu"},
		{"unlock", map[string]any{"is_locked": false}, func(d domainOut) any { return d.IsLocked }, false},
		{"autorenew", map[string]any{"autorenew": "on"}, func(d domainOut) any { return d.Autorenew }, "on"},
		{"fields left out stay", map[string]any{"autorenew": "on"}, func(d domainOut) any { return d.IsLocked }, true},
		{"admin handle", map[string]any{"admin_handle": "AS100002-DE"}, func(d domainOut) any { return d.AdminHandle + "|" + d.OwnerHandle }, "AS100002-DE|" + owner},
		{"dnssec", map[string]any{"is_dnssec_enabled": true}, func(d domainOut) any { return d.DNSSEC }, "signedDelegation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newSim(t, sim.Config{})
			id := demoID(t, s, "hostfleet-demo.com")
			var data struct {
				ID     int    `json:"id"`
				Status string `json:"status"`
			}
			c.ok("PUT", fmt.Sprintf("/domains/%d", id), tt.body, &data)
			if data.ID != id || data.Status != "ACT" {
				t.Errorf("update answered %+v", data)
			}
			if got := tt.got(c.domain(id)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAuthCodeResetReplacesTheCode(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	path := fmt.Sprintf("/domains/%d/authcode", demoID(t, s, "hostfleet-demo.com"))
	type code struct {
		AuthCode string `json:"auth_code"`
		Type     string `json:"type"`
	}
	var before, reset, after code
	c.ok("GET", path, nil, &before)
	c.ok("POST", path+"/reset", map[string]any{}, &reset)
	c.ok("GET", path, nil, &after)
	if before.AuthCode == "" || reset.AuthCode == before.AuthCode || after != reset || after.Type != "external" {
		t.Errorf("before %+v, reset %+v, after %+v; want a new external code that stays", before, reset, after)
	}
}

func TestDeletedDomainIsGone(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	id := demoID(t, s, "schmidt-hosting.de")
	var data struct{ Status string }
	c.ok("DELETE", fmt.Sprintf("/domains/%d", id), nil, &data)
	if r := c.call("GET", fmt.Sprintf("/domains/%d", id), nil); r.status != 404 || r.Code != 320 {
		t.Errorf("GET after delete: %d code %d, want 404 code 320", r.status, r.Code)
	}
	var list struct{ Total int }
	c.ok("GET", "/domains?full_name=schmidt-hosting.de", nil, &list)
	if list.Total != 0 {
		t.Errorf("listing still has it")
	}
	if _, ok := s.Domain("schmidt-hosting.de"); ok {
		t.Errorf("Domain() still has it")
	}
}

func TestCustomerCanGoOnceNoDomainUsesIt(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	c.ok("DELETE", fmt.Sprintf("/domains/%d", demoID(t, s, "schmidt-hosting.de")), nil, nil)
	c.ok("DELETE", "/customers/AS100002-DE", nil, nil)
	if r := c.call("GET", "/customers/AS100002-DE", nil); r.status != 404 || r.Code != 176 {
		t.Errorf("GET after delete: %d code %d, want 404 code 176", r.status, r.Code)
	}
}

func TestRenewMovesTheExpiration(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	id := demoID(t, s, "hostfleet-demo.com")
	before := c.domain(id).ExpirationDate
	c.ok("POST", fmt.Sprintf("/domains/%d/renew", id), map[string]any{"period": 2}, nil)
	after := c.domain(id).ExpirationDate
	b, _ := time.Parse("2006-01-02 15:04:05", before)
	if want := b.AddDate(2, 0, 0).Format("2006-01-02 15:04:05"); after != want {
		t.Errorf("expiration %s → %s, want %s", before, after, want)
	}
}

func TestListingFiltersAndPages(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	var more []sim.Domain
	for _, n := range []string{"page-a", "page-b", "page-c", "page-d", "page-e"} {
		more = append(more, sim.Domain{Name: n, Extension: "com", OwnerHandle: owner, AdminHandle: owner, TechHandle: owner})
	}
	s.Load(sim.Data{Domains: more})
	tests := []struct {
		query string
		names string
		total int
	}{
		{"limit=2&offset=2", "page-a,page-b", 7},
		{"extension=de", "schmidt-hosting", 1},
		{"domain_name_pattern=page-*&limit=3", "page-a,page-b,page-c", 5},
		{"contact_handle=AS100002-DE", "schmidt-hosting", 1},
		{"status=REQ", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var list struct {
				Results []domainOut `json:"results"`
				Total   int         `json:"total"`
			}
			c.ok("GET", "/domains?"+tt.query, nil, &list)
			var names []string
			for _, d := range list.Results {
				names = append(names, d.Domain.Name)
			}
			if got := strings.Join(names, ","); got != tt.names || list.Total != tt.total {
				t.Errorf("got %s (total %d), want %s (total %d)", got, list.Total, tt.names, tt.total)
			}
		})
	}
}

// customerOut is the part of a v1beta customer the tests read.
type customerOut struct {
	Handle string `json:"handle"`
	Name   struct {
		FullName string `json:"full_name"`
		Initials string `json:"initials"`
	} `json:"name"`
	Email   string            `json:"email"`
	Phone   map[string]string `json:"phone"`
	Address map[string]string `json:"address"`
}

func TestCreatedCustomerHasAHandleLikeOpenProvider(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	var created struct{ Handle string }
	c.ok("POST", "/customers", customer("Jane", "Roe", map[string]any{"address": address("Rue", "5", "75001", "Paris", "fr")}), &created)
	if !regexp.MustCompile(`^JR[0-9]{6}-FR$`).MatchString(created.Handle) {
		t.Fatalf("handle %q, want JR######-FR", created.Handle)
	}
	var got customerOut
	c.ok("GET", "/customers/"+created.Handle, nil, &got)
	if got.Handle != created.Handle || got.Name.FullName != "Jane Roe" || got.Name.Initials != "J R" || got.Email != "jane@example.org" {
		t.Errorf("customer = %+v", got)
	}
	if len(s.Customers()) != 3 {
		t.Errorf("Customers() has %d, want the 2 demo ones and the new one", len(s.Customers()))
	}
}

func TestUpdateCustomerChangesOnlyWhatIsGiven(t *testing.T) {
	_, c := newSim(t, sim.Config{})
	c.ok("PUT", "/customers/"+owner, map[string]any{"email": "new@example.nl", "phone": phone("+31", "10", "7654321")}, nil)
	var got customerOut
	c.ok("GET", "/customers/"+owner, nil, &got)
	if got.Email != "new@example.nl" || got.Phone["area_code"] != "10" || got.Address["city"] != "Amsterdam" || got.Name.FullName != "Jan Dekker" {
		t.Errorf("customer = %+v", got)
	}
}

func TestListCustomersByEmailPattern(t *testing.T) {
	_, c := newSim(t, sim.Config{})
	var list struct {
		Results []customerOut `json:"results"`
		Total   int           `json:"total"`
	}
	c.ok("GET", "/customers?email_pattern=*@example.de", nil, &list)
	if list.Total != 1 || len(list.Results) != 1 || list.Results[0].Handle != "AS100002-DE" {
		t.Errorf("listing = %+v", list)
	}
}

func TestScriptedStatusFaultHitsTheNextCallsOnly(t *testing.T) {
	tests := []struct {
		status   int
		message  string
		wantCode int
		wantDesc string
	}{
		{503, "registry timeout", 999, "registry timeout"},
		{401, "", 196, "Unauthorized"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			s, c := newSim(t, sim.Config{})
			s.Inject(simkit.Fault{Op: "domains.create", Target: "fresh.com", Times: 2, Status: tt.status, Message: tt.message})
			for i := range 2 {
				r := c.call("POST", "/domains", registration("fresh", "com", nil))
				if r.status != tt.status || r.Code != tt.wantCode || r.Desc != tt.wantDesc {
					t.Fatalf("call %d: %d code %d %q", i+1, r.status, r.Code, r.Desc)
				}
			}
			c.register("fresh", "com", nil)
			if n := s.CountCalls("domains.create", "fresh.com"); n != 3 {
				t.Errorf("CountCalls = %d, want 3", n)
			}
		})
	}
}

func TestRetryAfterHeaderIsSent(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	s.Inject(simkit.Fault{Op: "domains.list", Status: 429, RetryAfter: 3 * time.Second})
	r := c.call("GET", "/domains", nil)
	if r.status != 429 || r.header.Get("Retry-After") != "3" || r.Code == 0 {
		t.Errorf("got %d code %d with Retry-After %q, want 429 with 3", r.status, r.Code, r.header.Get("Retry-After"))
	}
}

func TestDropRegistersButLosesTheAnswer(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	s.Inject(simkit.Fault{Op: "domains.create", Times: 1, Drop: true})
	res, err := c.send(context.Background(), "POST", "/domains", registration("fresh", "com", nil))
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("the dropped call succeeded")
	}
	if _, ok := s.Domain("fresh.com"); !ok {
		t.Fatal("the dropped registration was not carried out")
	}
	// Retrying blindly is what the drop punishes.
	if r := c.call("POST", "/domains", registration("fresh", "com", nil)); r.Code != 346 {
		t.Errorf("retry: code %d, want 346 duplicate", r.Code)
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	s.Inject(simkit.Fault{Op: "domains.list", Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := c.send(ctx, "GET", "/domains", nil)
	if err == nil {
		res.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
}

func TestTaskErrorFailsTheRegistration(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	s.Inject(simkit.Fault{Op: "domains.create", Times: 1, TaskError: "registry rejected the create"})
	id, status := c.register("fresh", "com", nil)
	if status != "REQ" {
		t.Fatalf("status %s, want REQ", status)
	}
	c.waitStatus(id, "FAI")
	if d, _ := s.Domain("fresh.com"); d.Error != "registry rejected the create" {
		t.Errorf("Error = %q", d.Error)
	}
}

func TestRandomFaultsRepeatWithTheSameSeed(t *testing.T) {
	outcomes := func() string {
		s, c := newSim(t, sim.Config{})
		s.SetRandomFaults(simkit.RandomFaults{Rate: 0.3})
		var b strings.Builder
		for range 40 {
			if r := c.call("GET", "/domains", nil); r.status != http.StatusOK {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	first, second := outcomes(), outcomes()
	if first != second || !strings.Contains(first, "x") || !strings.Contains(first, ".") {
		t.Errorf("runs %s and %s: want the same mix of failures and successes", first, second)
	}
}

func TestCallLogRecordsOpsTargetsAndStatuses(t *testing.T) {
	s, c := newSim(t, sim.Config{})
	id := demoID(t, s, "hostfleet-demo.com")
	s.ResetCalls()
	c.ok("GET", fmt.Sprintf("/domains/%d", id), nil, nil)
	c.call("POST", "/domains", registration("hostfleet-demo", "com", nil))
	c.ok("GET", "/customers/"+owner, nil, nil)
	want := []simkit.Call{
		{Method: "GET", Op: "domains.get", Target: fmt.Sprint(id), Status: 200},
		{Method: "POST", Op: "domains.create", Target: "hostfleet-demo.com", Status: 400},
		{Method: "GET", Op: "customers.get", Target: owner, Status: 200},
	}
	res, err := http.Get(c.base + "/_sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got []simkit.Call
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d calls logged, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Method != w.Method || g.Op != w.Op || g.Target != w.Target || g.Status != w.Status {
			t.Errorf("call %d = %s %s %s %d, want %s %s %s %d", i, g.Method, g.Op, g.Target, g.Status, w.Method, w.Op, w.Target, w.Status)
		}
	}
}

func TestControlEndpointsExposeState(t *testing.T) {
	_, c := newSim(t, sim.Config{})
	res, err := http.Post(c.base+"/_sim/taken", "application/json", strings.NewReader(`{"domain":"mine.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /_sim/taken: %d", res.StatusCode)
	}
	if r := c.call("POST", "/domains", registration("mine", "com", nil)); r.Code != 311 {
		t.Errorf("registering a name marked taken: code %d, want 311", r.Code)
	}
	for path, want := range map[string]int{"/_sim/domains": 2, "/_sim/customers": 2} {
		res, err := http.Get(c.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var items []json.RawMessage
		err = json.NewDecoder(res.Body).Decode(&items)
		res.Body.Close()
		if err != nil || len(items) != want {
			t.Errorf("GET %s: %d items (%v), want %d", path, len(items), err, want)
		}
	}
}
