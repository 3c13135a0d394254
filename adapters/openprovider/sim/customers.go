package sim

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Customer is a contact handle of the reseller account, with the fields of
// v1beta's customer object.
type Customer struct {
	// Handle is the id OpenProvider gives the customer, "JD123456-NL":
	// the first letters of first and last name, a number and the country.
	Handle      string  `json:"handle"`
	ID          int     `json:"id"`
	Name        Name    `json:"name"`
	CompanyName string  `json:"company_name"`
	Email       string  `json:"email"`
	Phone       Phone   `json:"phone"`
	Address     Address `json:"address"`
	VAT         string  `json:"vat"`
	Comments    string  `json:"comments"`
	Locale      string  `json:"locale"`
}

// Name is a customer's name.
type Name struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Initials  string `json:"initials"`
	Prefix    string `json:"prefix"`
	FullName  string `json:"full_name"`
}

// Phone is a phone number in OpenProvider's three parts.
type Phone struct {
	CountryCode      string `json:"country_code"` // with "+"
	AreaCode         string `json:"area_code"`
	SubscriberNumber string `json:"subscriber_number"`
}

// Address is a postal address; Country is an ISO 3166 alpha-2 code.
type Address struct {
	Street  string `json:"street"`
	Number  string `json:"number"`
	Suffix  string `json:"suffix"`
	Zipcode string `json:"zipcode"`
	City    string `json:"city"`
	State   string `json:"state"`
	Country string `json:"country"`
}

var (
	emailRE       = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	countryCodeRE = regexp.MustCompile(`^\+[0-9]{1,3}$`)
	digitsRE      = regexp.MustCompile(`^[0-9]+$`)
	countryRE     = regexp.MustCompile(`^[A-Z]{2}$`)
	handleRE      = regexp.MustCompile(`^[A-Z]{2}[0-9]{6}-[A-Z]{2}$`)
)

// checkEmail validates an e-mail address with OpenProvider's codes.
func checkEmail(email string) error {
	switch {
	case strings.TrimSpace(email) == "":
		return invalid(145, "Empty e-mail address!")
	case !emailRE.MatchString(email):
		return invalid(146, "Invalid e-mail!")
	}
	return nil
}

// check validates the three parts of a phone number.
func (p Phone) check() error {
	switch {
	case p.CountryCode == "":
		return invalid(130, "Empty telephone country code field!")
	case !countryCodeRE.MatchString(p.CountryCode):
		return invalid(131, "Invalid telephone country code!")
	case p.AreaCode == "":
		return invalid(132, "Empty telephone regioncode field!")
	case !digitsRE.MatchString(p.AreaCode):
		return invalid(133, "Invalid telephone region code number!")
	case p.SubscriberNumber == "":
		return invalid(134, "Empty telephone subscribers number!")
	case !digitsRE.MatchString(p.SubscriberNumber) || len(p.SubscriberNumber) < 4:
		return invalid(135, "Invalid telephone subscribers number!")
	}
	return nil
}

// check validates the parts of an address OpenProvider requires.
func (a Address) check() error {
	switch {
	case strings.TrimSpace(a.Street) == "":
		return invalid(110, "Empty street name field!")
	case strings.TrimSpace(a.Number) == "":
		return invalid(112, "Empty house number field!")
	case strings.TrimSpace(a.Zipcode) == "":
		return invalid(115, "Empty zipcode field!")
	case strings.TrimSpace(a.City) == "":
		return invalid(117, "Empty city field!")
	case a.Country == "":
		return invalid(120, "Empty country field!")
	case !countryRE.MatchString(a.Country):
		return invalid(121, "Invalid country code!")
	}
	return nil
}

// normalize fills the derived name fields and upper-cases the country, as
// OpenProvider stores them.
func (c *Customer) normalize() {
	c.Address.Country = strings.ToUpper(strings.TrimSpace(c.Address.Country))
	n := &c.Name
	if n.Initials == "" {
		n.Initials = strings.TrimSpace(initial(n.FirstName) + " " + initial(n.LastName))
	}
	n.FullName = strings.Join(slices.DeleteFunc([]string{n.FirstName, n.Prefix, n.LastName},
		func(s string) bool { return s == "" }), " ")
}

func initial(s string) string {
	for _, r := range s {
		return string(unicode.ToUpper(r))
	}
	return ""
}

// handleLetter is the letter a name gives a handle: its first, if an
// ASCII letter, else X.
func handleLetter(s string) byte {
	if r, _ := utf8.DecodeRuneInString(s); unicode.ToUpper(r) >= 'A' && unicode.ToUpper(r) <= 'Z' {
		return byte(unicode.ToUpper(r))
	}
	return 'X'
}

// newHandle numbers a handle for c; the lock must be held.
func (s *Server) newHandle(c *Customer) string {
	for {
		h := fmt.Sprintf("%c%c%06d-%s", handleLetter(c.Name.FirstName), handleLetter(c.Name.LastName), s.nextHandle%1000000, c.Address.Country)
		s.nextHandle++
		if _, used := s.customers[h]; !used {
			return h
		}
	}
}

// add stores c under a handle of its own (given, or numbered now) and
// returns the handle; the lock must be held.
func (s *Server) add(c Customer) string {
	c.normalize()
	if c.Handle == "" {
		c.Handle = s.newHandle(&c)
	}
	c.ID = s.nextCustID
	s.nextCustID++
	s.customers[c.Handle] = &c
	return c.Handle
}

// createCustomer answers POST /customers with the new handle.
func (s *Server) createCustomer(c *call) (any, error) {
	var in Customer
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	switch {
	case strings.TrimSpace(in.Name.FirstName) == "":
		return nil, invalid(102, "Empty first name!")
	case strings.TrimSpace(in.Name.LastName) == "":
		return nil, invalid(105, "Empty last name field!")
	}
	if err := checkEmail(in.Email); err != nil {
		return nil, err
	}
	if err := in.Phone.check(); err != nil {
		return nil, err
	}
	in.Address.Country = strings.ToUpper(in.Address.Country)
	if err := in.Address.check(); err != nil {
		return nil, err
	}
	in.Handle = "" // OpenProvider chooses it
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"handle": s.add(in)}, nil
}

// customerJSON is a customer as GET /customers shows it.
func customerJSON(c *Customer) map[string]any {
	return map[string]any{
		"handle": c.Handle, "id": c.ID, "reseller_id": resellerID,
		"name": c.Name, "company_name": c.CompanyName, "email": c.Email,
		"phone": c.Phone, "address": c.Address, "vat": c.VAT,
		"comments": c.Comments, "locale": c.Locale,
		"is_deleted": false, "deleted_at": "0000-00-00 00:00:00",
	}
}

// customerOf finds the customer of the path's {handle}; the lock must be
// held.
func (s *Server) customerOf(c *call) (*Customer, error) {
	h := c.r.PathValue("handle")
	if !handleRE.MatchString(h) {
		return nil, invalid(195, "Invalid handle").with(h)
	}
	cust, ok := s.customers[h]
	if !ok {
		return nil, notFound(176, "Customer handle not found").with(h)
	}
	return cust, nil
}

func (s *Server) getCustomer(c *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cust, err := s.customerOf(c)
	if err != nil {
		return nil, err
	}
	return customerJSON(cust), nil
}

// listCustomers answers GET /customers with the email_pattern,
// last_name_pattern and handle_pattern filters (* wildcards), paged by
// limit and offset. Ordered by handle.
func (s *Server) listCustomers(c *call) (any, error) {
	q := c.r.URL.Query()
	patterns := []struct {
		pattern string
		field   func(*Customer) string
	}{
		{q.Get("email_pattern"), func(c *Customer) string { return c.Email }},
		{q.Get("last_name_pattern"), func(c *Customer) string { return c.Name.LastName }},
		{q.Get("handle_pattern"), func(c *Customer) string { return c.Handle }},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []map[string]any
next:
	for _, cust := range s.sortedCustomers() {
		for _, p := range patterns {
			if p.pattern != "" && !wildcard(strings.ToLower(p.pattern), strings.ToLower(p.field(cust))) {
				continue next
			}
		}
		all = append(all, customerJSON(cust))
	}
	results, err := page(c.r, all)
	if err != nil {
		return nil, err
	}
	return map[string]any{"results": append([]map[string]any{}, results...), "total": len(all)}, nil
}

// sortedCustomers returns the customers ordered by handle; the lock must
// be held.
func (s *Server) sortedCustomers() []*Customer {
	out := make([]*Customer, 0, len(s.customers))
	for _, c := range s.customers {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Customer) int { return strings.Compare(a.Handle, b.Handle) })
	return out
}

// updateCustomer answers PUT /customers/{handle}. Name and company cannot
// change (v1beta's update has no such fields); what is left out stays.
func (s *Server) updateCustomer(c *call) (any, error) {
	var in struct {
		Email    string   `json:"email"`
		Phone    *Phone   `json:"phone"`
		Address  *Address `json:"address"`
		VAT      string   `json:"vat"`
		Comments string   `json:"comments"`
		Locale   string   `json:"locale"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if in.Email != "" {
		if err := checkEmail(in.Email); err != nil {
			return nil, err
		}
	}
	if in.Phone != nil {
		if err := in.Phone.check(); err != nil {
			return nil, err
		}
	}
	if in.Address != nil {
		in.Address.Country = strings.ToUpper(in.Address.Country)
		if err := in.Address.check(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cust, err := s.customerOf(c)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ in, to *string }{{&in.Email, &cust.Email}, {&in.VAT, &cust.VAT}, {&in.Comments, &cust.Comments}, {&in.Locale, &cust.Locale}} {
		if *f.in != "" {
			*f.to = *f.in
		}
	}
	if in.Phone != nil {
		cust.Phone = *in.Phone
	}
	if in.Address != nil {
		cust.Address = *in.Address
	}
	return map[string]any{"success": true}, nil
}

// deleteCustomer answers DELETE /customers/{handle}; a handle any domain
// still uses cannot go.
func (s *Server) deleteCustomer(c *call) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cust, err := s.customerOf(c)
	if err != nil {
		return nil, err
	}
	for _, d := range s.domains {
		if slices.Contains([]string{d.OwnerHandle, d.AdminHandle, d.TechHandle, d.BillingHandle}, cust.Handle) {
			return nil, invalid(6200, "Cannot delete a customer that has domain(s).").with(d.FullName())
		}
	}
	delete(s.customers, cust.Handle)
	return map[string]any{"success": true}, nil
}
