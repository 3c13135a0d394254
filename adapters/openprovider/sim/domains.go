package sim

import (
	"fmt"
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Domain is a domain in the simulated reseller account.
type Domain struct {
	ID int `json:"id"`
	// Name is the domain without its extension: "example" of example.com.
	Name      string `json:"name"`
	Extension string `json:"extension"`
	// Status is OpenProvider's: REQ while the registry works on the
	// registration, ACT once active, FAI when the registration failed.
	Status          string       `json:"status"`
	OwnerHandle     string       `json:"ownerHandle"`
	AdminHandle     string       `json:"adminHandle"`
	TechHandle      string       `json:"techHandle"`
	BillingHandle   string       `json:"billingHandle,omitempty"`
	Period          int          `json:"period"`
	Autorenew       string       `json:"autorenew"` // on, off or default
	NameServers     []NameServer `json:"nameServers"`
	NSGroup         string       `json:"nsGroup,omitempty"`
	IsLocked        bool         `json:"isLocked"`
	IsDNSSECEnabled bool         `json:"isDnssecEnabled"`
	IsPremium       bool         `json:"isPremium"`
	AuthCode        string       `json:"authCode"`
	OrderDate       time.Time    `json:"orderDate"`
	ActiveDate      time.Time    `json:"activeDate"`
	ExpirationDate  time.Time    `json:"expirationDate"`
	// Error says why a FAI registration failed.
	Error string `json:"error,omitempty"`
}

// FullName is the domain with its extension: "example.com".
func (d Domain) FullName() string { return d.Name + "." + d.Extension }

// NameServer is one of a domain's nameservers, as v1beta writes it.
type NameServer struct {
	Name  string `json:"name"`
	IP    string `json:"ip"`
	IP6   string `json:"ip6"`
	SeqNr int    `json:"seq_nr"`
}

// extension is a TLD the simulated reseller sells.
type extension struct {
	price float64 // per year, EUR
	// lockable says whether the registry supports the transfer lock.
	lockable bool
}

// extensions are the TLDs on sale; any other extension gets code 307.
var extensions = map[string]extension{
	"com": {9.49, true}, "net": {11.29, true}, "org": {10.99, true},
	"io": {39.00, true}, "dev": {12.99, true},
	"nl": {4.49, false}, "eu": {4.99, false}, "de": {4.25, false},
}

const currency = "EUR"

// nsGroups are the nameserver groups of the account; dns-openprovider is
// OpenProvider's own DNS, which every account has.
var nsGroups = map[string][]string{
	"dns-openprovider": {"ns1.openprovider.nl", "ns2.openprovider.be", "ns3.openprovider.eu"},
}

var (
	labelRE    = regexp.MustCompile(`^[a-z0-9-]+$`)
	hostnameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
)

// domainName is the {name, extension} pair of v1beta requests.
type domainName struct {
	Name      string `json:"name"`
	Extension string `json:"extension"`
}

// check validates the pair with OpenProvider's codes and returns it
// normalised.
func (n domainName) check() (domainName, error) {
	name := strings.ToLower(strings.TrimSpace(n.Name))
	ext := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(n.Extension), "."))
	switch {
	case name == "":
		return n, invalid(300, "Your request contains an empty domain name!")
	case len(name) > 63:
		return n, invalid(302, "Your request has more than 63 characters!")
	case !labelRE.MatchString(name):
		return n, invalid(303, "Your request contains invalid characters!")
	case strings.HasPrefix(name, "-"):
		return n, invalid(304, "Your request begins with an - !")
	case strings.HasSuffix(name, "-"):
		return n, invalid(305, "Your request ends with an - !")
	case ext == "":
		return n, invalid(306, "Your request contains an empty extension!")
	}
	if _, ok := extensions[ext]; !ok {
		return n, invalid(307, "Your request contains an invalid extension!")
	}
	return domainName{name, ext}, nil
}

func (n domainName) full() string { return n.Name + "." + n.Extension }

// byName finds a domain of the account; the lock must be held.
func (s *Server) byName(full string) *Domain {
	for _, d := range s.domains {
		if d.FullName() == full {
			return d
		}
	}
	return nil
}

// checkDomains answers POST /domains/check: "active" for a name registered
// here or elsewhere (taken), "free" otherwise, with prices on request.
func (s *Server) checkDomains(c *call) (any, error) {
	var in struct {
		Domains   []domainName `json:"domains"`
		WithPrice bool         `json:"with_price"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if len(in.Domains) == 0 {
		return nil, invalid(300, "Your request contains an empty domain name!")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	results := []map[string]any{}
	for _, n := range in.Domains {
		n, err := n.check()
		if err != nil {
			return nil, err
		}
		full := n.full()
		res := map[string]any{"domain": full, "status": "free", "is_premium": false}
		if s.byName(full) != nil || s.taken[full] {
			res["status"], res["reason"] = "active", "Domain exists"
		}
		premium, isPremium := s.premium[full]
		if isPremium {
			res["is_premium"] = true
			res["premium"] = map[string]any{"currency": currency, "price": map[string]any{"create": premium}}
		}
		if in.WithPrice {
			p := map[string]any{"price": extensions[n.Extension].price, "currency": currency}
			res["price"] = map[string]any{"product": p, "reseller": p}
		}
		results = append(results, res)
	}
	return map[string]any{"results": results}, nil
}

// nameServerIn is a nameserver in a request; seq_nr is an int32.
type nameServerIn struct {
	Name  string `json:"name"`
	IP    string `json:"ip"`
	IP6   string `json:"ip6"`
	SeqNr number `json:"seq_nr"`
}

// nameServers validates a domain's nameservers, given one by one or as a
// group, and returns them with the group's name. Glue (a nameserver inside
// the domain itself) needs an address.
func nameServers(full string, list []nameServerIn, group string) ([]NameServer, string, error) {
	if group != "" {
		hosts, ok := nsGroups[group]
		if !ok {
			return nil, "", invalid(201, "Nameserver group name not found in system!")
		}
		return groupServers(hosts), group, nil
	}
	if len(list) < 2 {
		return nil, "", invalid(221, "2 nameservers or a group required")
	}
	var out []NameServer
	for i, ns := range list {
		name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(ns.Name), "."))
		switch {
		case !hostnameRE.MatchString(name):
			return nil, "", invalid(226, "Invalid nameserver hostname").with(ns.Name)
		case slices.ContainsFunc(out, func(o NameServer) bool { return o.Name == name }):
			return nil, "", invalid(222, "Invalid or double nameserver").with(name)
		case ns.IP != "" && (net.ParseIP(ns.IP) == nil || net.ParseIP(ns.IP).To4() == nil):
			return nil, "", invalid(227, "Invalid nameserver IPv4 address").with(ns.IP)
		case ns.IP6 != "" && (net.ParseIP(ns.IP6) == nil || net.ParseIP(ns.IP6).To4() != nil):
			return nil, "", invalid(228, "Invalid nameserver IPv6 address").with(ns.IP6)
		case (name == full || strings.HasSuffix(name, "."+full)) && ns.IP == "" && ns.IP6 == "":
			return nil, "", invalid(231, "IP is not specified").with(name)
		}
		seq := int(ns.SeqNr)
		if seq == 0 {
			seq = i + 1
		}
		out = append(out, NameServer{Name: name, IP: ns.IP, IP6: ns.IP6, SeqNr: seq})
	}
	return out, "", nil
}

// groupServers are the nameservers of a group, in order.
func groupServers(hosts []string) []NameServer {
	out := make([]NameServer, len(hosts))
	for i, h := range hosts {
		out[i] = NameServer{Name: h, SeqNr: i + 1}
	}
	return out
}

// handleRoles are the contact roles of a domain with the codes OpenProvider
// refuses an empty and an unknown handle with; billing may be left out.
var handleRoles = []struct {
	emptyCode, badCode int
	emptyDesc, badDesc string
	optional           bool
}{
	{330, 331, "Empty owner handle!", "Invalid owner handle!", false}, // owner
	{332, 333, "Empty admin handle!", "Invalid admin handle!", false}, // admin
	{334, 335, "Empty tech handle!", "Invalid tech handle!", false},   // tech
	{0, 373, "", "Invalid billing handle!", true},                     // billing
}

// checkHandles checks the handles given per role (in handleRoles order);
// with creating, the required ones must be there. The lock must be held.
func (s *Server) checkHandles(handles [4]string, creating bool) error {
	for i, h := range handles {
		hr := handleRoles[i]
		if h == "" {
			if creating && !hr.optional {
				return invalid(hr.emptyCode, hr.emptyDesc)
			}
			continue
		}
		if _, ok := s.customers[h]; !ok {
			return invalid(hr.badCode, hr.badDesc).with(h)
		}
	}
	return nil
}

// autorenew checks an autorenew value; empty means "default".
func autorenew(v string) (string, error) {
	switch v {
	case "":
		return "default", nil
	case "on", "off", "default":
		return v, nil
	}
	return "", invalid(347, "Wrong auto renew value")
}

// createDomain answers POST /domains. The domain exists at once, as REQ;
// the registry makes it ACT after RegistrationDuration (or FAI when a
// TaskError fault says so).
func (s *Server) createDomain(c *call) (any, error) {
	var in struct {
		Domain           domainName     `json:"domain"`
		OwnerHandle      string         `json:"owner_handle"`
		AdminHandle      string         `json:"admin_handle"`
		TechHandle       string         `json:"tech_handle"`
		BillingHandle    string         `json:"billing_handle"`
		Period           number         `json:"period"`
		Autorenew        string         `json:"autorenew"`
		NameServers      []nameServerIn `json:"name_servers"`
		NSGroup          string         `json:"ns_group"`
		IsDNSSECEnabled  bool           `json:"is_dnssec_enabled"`
		AcceptPremiumFee float64        `json:"accept_premium_fee"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	n, err := in.Domain.check()
	if err != nil {
		return nil, err
	}
	full := n.full()
	switch {
	case in.Period == 0:
		return nil, invalid(315, "Empty period!")
	case in.Period < 1 || in.Period > maxRegistration:
		return nil, invalid(316, "Invalid period!")
	}
	renew, err := autorenew(in.Autorenew)
	if err != nil {
		return nil, err
	}
	ns, group, err := nameServers(full, in.NameServers, in.NSGroup)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	handles := [4]string{in.OwnerHandle, in.AdminHandle, in.TechHandle, in.BillingHandle}
	if err := s.checkHandles(handles, true); err != nil {
		return nil, err
	}
	if s.byName(full) != nil {
		return nil, invalid(346, "Duplicate domain").with("Reseller cannot add duplicate domain " + full)
	}
	if s.taken[full] {
		return nil, invalid(311, "The domain you want to register is not free!")
	}
	fee, isPremium := s.premium[full]
	if isPremium && in.AcceptPremiumFee < fee {
		return nil, invalid(379, "You are about to register the premium domain. If you accept this registration fee, "+
			"re-send the createDomainRequest and add the parameters acceptPremiumFee with value 1 .").with(strconv.FormatFloat(fee, 'f', 2, 64))
	}
	now := time.Now()
	d := &Domain{
		ID: s.nextID, Name: n.Name, Extension: n.Extension, Status: "REQ",
		OwnerHandle: in.OwnerHandle, AdminHandle: in.AdminHandle, TechHandle: in.TechHandle, BillingHandle: in.BillingHandle,
		Period: int(in.Period), Autorenew: renew, NameServers: ns, NSGroup: group,
		IsDNSSECEnabled: in.IsDNSSECEnabled, IsPremium: isPremium, AuthCode: s.newAuthCode(),
		OrderDate: now, ExpirationDate: now.AddDate(int(in.Period), 0, 0),
	}
	s.nextID++
	s.domains[d.ID] = d
	s.register(d, c.taskError)
	return map[string]any{
		"id": d.ID, "status": d.Status, "auth_code": d.AuthCode, "activation_date": "",
		"expiration_date": formatDate(d.ExpirationDate), "renewal_date": formatDate(d.ExpirationDate),
	}, nil
}

// register lets the registry finish d's registration after
// RegistrationDuration; the lock must be held.
func (s *Server) register(d *Domain, taskError string) {
	if s.closed {
		return
	}
	s.timers = append(s.timers, time.AfterFunc(s.cfg.RegistrationDuration, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.domains[d.ID] != d || d.Status != "REQ" {
			return // deleted meanwhile
		}
		if taskError != "" {
			d.Status, d.Error = "FAI", taskError
			return
		}
		d.Status, d.ActiveDate = "ACT", time.Now()
	}))
}

// authCodeChars are what auth codes are made of: letters, digits and the
// punctuation registries require in EPP passwords.
const authCodeChars = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789#?*-+"

// newAuthCode draws an EPP auth code; the lock must be held.
func (s *Server) newAuthCode() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = authCodeChars[s.rng.IntN(len(authCodeChars))]
	}
	return string(b)
}

// domainJSON is a domain as GET /domains/{id} and the listing show it.
func domainJSON(d *Domain) map[string]any {
	dnssec := "unsigned"
	if d.IsDNSSECEnabled {
		dnssec = "signedDelegation"
	}
	return map[string]any{
		"id":     d.ID,
		"domain": domainName{d.Name, d.Extension},
		"status": d.Status, "type": "NEW", "unit": "y", "renew": d.Period,
		"owner_handle": d.OwnerHandle, "admin_handle": d.AdminHandle,
		"tech_handle": d.TechHandle, "billing_handle": d.BillingHandle,
		"reseller_id":  resellerID,
		"name_servers": append([]NameServer{}, d.NameServers...),
		"ns_group":     d.NSGroup, "autorenew": d.Autorenew,
		"is_locked": d.IsLocked, "is_lockable": extensions[d.Extension].lockable,
		"is_dnssec_enabled": d.IsDNSSECEnabled, "dnssec": dnssec,
		"is_premium": d.IsPremium, "is_deleted": false, "can_renew": d.Status == "ACT",
		"auth_code":                   d.AuthCode,
		"transfer_auth_code_required": "yes",
		"order_date":                  formatDate(d.OrderDate), "creation_date": formatDate(d.OrderDate),
		"active_date":     formatDate(d.ActiveDate),
		"expiration_date": formatDate(d.ExpirationDate), "renewal_date": formatDate(d.ExpirationDate),
	}
}

// domainOf finds the domain of the path's {id}; the lock must be held.
func (s *Server) domainOf(c *call) (*Domain, error) {
	v := c.r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return nil, invalidArgument(fmt.Sprintf("type mismatch, parameter: id, error: %v", err))
	}
	d, ok := s.domains[int(id)]
	if !ok {
		return nil, notFound(320, "The domain is not in your account").with(v)
	}
	return d, nil
}

// active refuses an operation on a domain the registry is not done with.
func active(d *Domain) error {
	if d.Status != "ACT" {
		return invalid(366, "This action is prohibitted for current status").with(d.Status)
	}
	return nil
}

func (s *Server) getDomain(c *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.domainOf(c)
	if err != nil {
		return nil, err
	}
	return domainJSON(d), nil
}

// listDomains answers GET /domains with the filters adapters use:
// full_name, extension, status, domain_name_pattern (* wildcards) and
// contact_handle, paged by limit and offset. Ordered by id.
func (s *Server) listDomains(c *call) (any, error) {
	q := c.r.URL.Query()
	full, ext := strings.ToLower(q.Get("full_name")), strings.ToLower(q.Get("extension"))
	status, pattern, handle := q.Get("status"), strings.ToLower(q.Get("domain_name_pattern")), q.Get("contact_handle")
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []map[string]any
	for _, id := range slices.Sorted(maps.Keys(s.domains)) {
		d := s.domains[id]
		switch {
		case full != "" && d.FullName() != full,
			ext != "" && d.Extension != ext,
			status != "" && !strings.EqualFold(d.Status, status),
			pattern != "" && !wildcard(pattern, d.Name),
			handle != "" && !slices.Contains([]string{d.OwnerHandle, d.AdminHandle, d.TechHandle, d.BillingHandle}, handle):
			continue
		}
		all = append(all, domainJSON(d))
	}
	results, err := page(c.r, all)
	if err != nil {
		return nil, err
	}
	return map[string]any{"results": append([]map[string]any{}, results...), "total": len(all)}, nil
}

// wildcard matches OpenProvider's patterns, where * stands for anything.
func wildcard(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// updateDomain answers PUT /domains/{id}. Fields left out stay as they
// are; the whole change is refused if any part of it is.
func (s *Server) updateDomain(c *call) (any, error) {
	var in struct {
		NameServers     []nameServerIn `json:"name_servers"`
		NSGroup         string         `json:"ns_group"`
		IsLocked        *bool          `json:"is_locked"`
		IsDNSSECEnabled *bool          `json:"is_dnssec_enabled"`
		Autorenew       string         `json:"autorenew"`
		OwnerHandle     string         `json:"owner_handle"`
		AdminHandle     string         `json:"admin_handle"`
		TechHandle      string         `json:"tech_handle"`
		BillingHandle   string         `json:"billing_handle"`
		ResetAuthCode   bool           `json:"reset_auth_code"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.domainOf(c)
	if err != nil {
		return nil, err
	}
	if err := active(d); err != nil {
		return nil, err
	}
	next := *d
	if in.NameServers != nil || in.NSGroup != "" {
		if next.NameServers, next.NSGroup, err = nameServers(d.FullName(), in.NameServers, in.NSGroup); err != nil {
			return nil, err
		}
	}
	if in.Autorenew != "" {
		if next.Autorenew, err = autorenew(in.Autorenew); err != nil {
			return nil, err
		}
	}
	if in.IsLocked != nil {
		if *in.IsLocked && !extensions[d.Extension].lockable {
			return nil, invalid(329, "Locking not possible for extension").with(d.Extension)
		}
		next.IsLocked = *in.IsLocked
	}
	if in.IsDNSSECEnabled != nil {
		next.IsDNSSECEnabled = *in.IsDNSSECEnabled
	}
	handles := [4]string{in.OwnerHandle, in.AdminHandle, in.TechHandle, in.BillingHandle}
	if err := s.checkHandles(handles, false); err != nil {
		return nil, err
	}
	for i, p := range []*string{&next.OwnerHandle, &next.AdminHandle, &next.TechHandle, &next.BillingHandle} {
		if handles[i] != "" {
			*p = handles[i]
		}
	}
	if in.ResetAuthCode {
		next.AuthCode = s.newAuthCode()
	}
	*d = next
	return map[string]any{"id": d.ID, "status": d.Status}, nil
}

// deleteDomain answers DELETE /domains/{id}: the domain leaves the account
// (and the simulated registry) at once. A registration still running
// cannot be deleted.
func (s *Server) deleteDomain(c *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.domainOf(c)
	if err != nil {
		return nil, err
	}
	if d.Status == "REQ" {
		return nil, active(d)
	}
	delete(s.domains, d.ID)
	return map[string]any{"status": "DEL"}, nil
}

// maxRegistration is how far ahead registries let a domain be paid for.
const maxRegistration = 10

// renewDomain answers POST /domains/{id}/renew {period}: the expiration
// moves by period years, within ten years from now.
func (s *Server) renewDomain(c *call) (any, error) {
	var in struct {
		Period number `json:"period"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	switch {
	case in.Period == 0:
		return nil, invalid(315, "Empty period!")
	case in.Period < 1 || in.Period > maxRegistration:
		return nil, invalid(316, "Invalid period!")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.domainOf(c)
	if err != nil {
		return nil, err
	}
	if err := active(d); err != nil {
		return nil, err
	}
	next := d.ExpirationDate.AddDate(int(in.Period), 0, 0)
	if next.After(time.Now().AddDate(maxRegistration, 0, 0)) {
		return nil, invalid(324, "This domain cannot be renewed yet").with("the registration would run past " + strconv.Itoa(maxRegistration) + " years")
	}
	d.ExpirationDate = next
	return map[string]any{"status": d.Status}, nil
}

func (s *Server) getAuthCode(c *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.domainOf(c)
	if err != nil {
		return nil, err
	}
	if err := active(d); err != nil {
		return nil, err
	}
	return map[string]any{"auth_code": d.AuthCode, "type": "external", "success": true}, nil
}

// resetAuthCode answers POST /domains/{id}/authcode/reset: the old code
// stops working and the new one is returned.
func (s *Server) resetAuthCode(c *call) (any, error) {
	// Only the external code is simulated; the body is read to refuse a
	// malformed one.
	var in struct {
		AuthCodeType string `json:"auth_code_type"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.domainOf(c)
	if err != nil {
		return nil, err
	}
	if err := active(d); err != nil {
		return nil, err
	}
	d.AuthCode = s.newAuthCode()
	return map[string]any{"auth_code": d.AuthCode, "type": "external", "success": true}, nil
}
