package sim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Record is a DNS record as the simulator keeps it.
type Record struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Name is the full name; AddRecord also takes one relative to the zone
	// ("www", "@").
	Name string `json:"name"`
	// Content is the value; an SRV record's is derived from Data, as
	// "priority weight port target".
	Content string `json:"content"`
	Proxied bool   `json:"proxied"`
	// TTL is in seconds, 1 meaning automatic; a proxied record's is always 1.
	TTL int `json:"ttl"`
	// Priority is an MX record's preference.
	Priority int      `json:"priority,omitempty"`
	Data     *SRVData `json:"data,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	// Tags are "name:value" strings.
	Tags              []string       `json:"tags,omitempty"`
	Settings          map[string]any `json:"settings,omitempty"`
	CreatedOn         time.Time      `json:"created_on"`
	ModifiedOn        time.Time      `json:"modified_on"`
	CommentModifiedOn time.Time      `json:"comment_modified_on,omitzero"`
	TagsModifiedOn    time.Time      `json:"tags_modified_on,omitzero"`
}

// SRVData are the components of an SRV record.
type SRVData struct {
	Priority int    `json:"priority"`
	Weight   int    `json:"weight"`
	Port     int    `json:"port"`
	Target   string `json:"target"`
}

func (r Record) clone() Record {
	r.Tags = slices.Clone(r.Tags)
	r.Settings = maps.Clone(r.Settings)
	if r.Data != nil {
		d := *r.Data
		r.Data = &d
	}
	return r
}

// proxiable reports whether Cloudflare could proxy the record: A and AAAA
// records to public addresses, and CNAMEs.
func (r Record) proxiable() bool {
	switch r.Type {
	case "CNAME":
		return true
	case "A", "AAAA":
		a, err := netip.ParseAddr(r.Content)
		return err == nil && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() &&
			!a.IsUnspecified() && !a.IsMulticast()
	}
	return false
}

// wire is the record as the API shows it, with the fields of the SDK's
// RecordResponse.
func (r Record) wire() map[string]any {
	m := map[string]any{
		"id": r.ID, "name": r.Name, "type": r.Type, "content": r.Content,
		"proxiable": r.proxiable(), "proxied": r.Proxied, "ttl": r.TTL,
		"settings": map[string]any{}, "meta": map[string]any{}, "comment": nil, "tags": []string{},
		"created_on": r.CreatedOn.Format(time.RFC3339Nano), "modified_on": r.ModifiedOn.Format(time.RFC3339Nano),
	}
	if r.Settings != nil {
		m["settings"] = r.Settings
	}
	if r.Comment != "" {
		m["comment"] = r.Comment
		m["comment_modified_on"] = r.CommentModifiedOn.Format(time.RFC3339Nano)
	}
	if len(r.Tags) > 0 {
		m["tags"] = r.Tags
		m["tags_modified_on"] = r.TagsModifiedOn.Format(time.RFC3339Nano)
	}
	switch r.Type {
	case "MX":
		m["priority"] = r.Priority
	case "SRV":
		m["data"] = r.Data
	}
	return m
}

// recordTypes are the types the simulator keeps; the real API has more.
var recordTypes = []string{"A", "AAAA", "CNAME", "MX", "SRV", "TXT"}

// readBody reads a JSON object body.
func readBody(r *http.Request) (map[string]json.RawMessage, error) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&body); err != nil || body == nil {
		return nil, badBody()
	}
	return body, nil
}

// srvInput is "data" as sent; every component is required.
type srvInput struct {
	Priority, Weight, Port *float64
	Target                 *string
}

// decodeRecord sets on rec the fields the body carries. A field of the
// wrong JSON type makes the whole body invalid.
func decodeRecord(body map[string]json.RawMessage, rec *Record) error {
	var ttl, priority *float64
	var data *srvInput
	if _, ok := body["settings"]; ok {
		rec.Settings = nil
	}
	fields := []struct {
		key string
		dst any
	}{
		{"type", &rec.Type}, {"name", &rec.Name}, {"content", &rec.Content}, {"proxied", &rec.Proxied},
		{"comment", &rec.Comment}, {"tags", &rec.Tags}, {"settings", &rec.Settings},
		{"ttl", &ttl}, {"priority", &priority}, {"data", &data},
	}
	for _, f := range fields {
		if raw, ok := body[f.key]; ok {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return badBody()
			}
		}
	}
	if ttl != nil {
		if *ttl != math.Trunc(*ttl) {
			return ttlError()
		}
		rec.TTL = int(*ttl)
	}
	if priority != nil {
		p, err := uint16Value(priority)
		if err != nil {
			return err
		}
		rec.Priority = p
	}
	if data != nil {
		d, err := data.srv()
		if err != nil {
			return err
		}
		rec.Data = d
	}
	return nil
}

// uint16Value checks a number that must be an integer from 0 to 65535.
func uint16Value(f *float64) (int, error) {
	if f == nil || *f != math.Trunc(*f) || *f < 0 || *f > math.MaxUint16 {
		return 0, badBody()
	}
	return int(*f), nil
}

func (in *srvInput) srv() (*SRVData, error) {
	if in.Target == nil {
		return nil, srvError()
	}
	d := &SRVData{Target: *in.Target}
	var err error
	for _, f := range []struct {
		src *float64
		dst *int
	}{{in.Priority, &d.Priority}, {in.Weight, &d.Weight}, {in.Port, &d.Port}} {
		if f.src == nil {
			return nil, srvError()
		}
		if *f.dst, err = uint16Value(f.src); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func ttlError() *apiError {
	return validationError(9021, "TTL must be between 60 and 86400 seconds, or 1 for Automatic.")
}

func srvError() *apiError {
	return validationError(9101, "SRV record data must have priority, weight, port and target.")
}

// labelRE is one label of a host name.
var labelRE = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)

// validHost reports whether name (lower case, no trailing dot) is a host
// name; wildcard allows a leading "*" label, as record names may have.
func validHost(name string, wildcard bool) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	if wildcard && labels[0] == "*" {
		labels = labels[1:]
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// hostContent checks a host name in content (a CNAME's, an MX's, an SRV
// target), which may end in a dot but is no IP address.
func hostContent(v string) (string, bool) {
	v = strings.TrimSuffix(v, ".")
	_, err := netip.ParseAddr(v)
	return v, err != nil && validHost(strings.ToLower(v), false)
}

// normalizeName turns a record name into the full name within zoneName
// the way the real API does: "@" is the apex, and a name that does not end
// in the zone gets the zone appended ("other.org" in example.com becomes
// "other.org.example.com").
func normalizeName(name, zoneName string) (string, bool) {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	switch {
	case name == "":
		return "", false
	case name == "@":
		name = zoneName
	case name != zoneName && !strings.HasSuffix(name, "."+zoneName):
		name += "." + zoneName
	}
	return name, validHost(name, true)
}

// validate checks rec as the real API does and puts it in canonical form:
// full name, canonical address, SRV content from its data, TTL 1 when
// proxied.
func validate(rec *Record, zoneName string) error {
	rec.Type = strings.ToUpper(rec.Type)
	if !slices.Contains(recordTypes, rec.Type) {
		return validationError(9020, "Invalid DNS record type")
	}
	name, ok := normalizeName(rec.Name, zoneName)
	if !ok {
		return validationError(9000, "DNS name is invalid.")
	}
	rec.Name = name
	switch rec.Type {
	case "A", "AAAA":
		a, err := netip.ParseAddr(rec.Content)
		if rec.Type == "A" && (err != nil || !a.Is4()) {
			return newError(http.StatusBadRequest, 9005, "Content for A record must be a valid IPv4 address.")
		}
		if rec.Type == "AAAA" && (err != nil || !a.Is6() || a.Zone() != "") {
			return newError(http.StatusBadRequest, 9006, "Content for AAAA record must be a valid IPv6 address.")
		}
		rec.Content = a.String()
	case "CNAME":
		if rec.Content, ok = hostContent(rec.Content); !ok {
			return validationError(9007, "Content for CNAME record is invalid.")
		}
	case "MX":
		if rec.Content, ok = hostContent(rec.Content); !ok {
			return validationError(9009, "Content for MX record must be a hostname.")
		}
	case "TXT":
		if rec.Content == "" {
			return validationError(9008, "Content for TXT record is invalid.")
		}
	case "SRV":
		if rec.Data == nil {
			return srvError()
		}
		if rec.Data.Target, ok = hostContent(rec.Data.Target); !ok {
			return srvError()
		}
		rec.Content = fmt.Sprintf("%d %d %d %s", rec.Data.Priority, rec.Data.Weight, rec.Data.Port, rec.Data.Target)
	}
	if rec.Type != "MX" {
		rec.Priority = 0
	}
	if rec.Type != "SRV" {
		rec.Data = nil
	}
	switch {
	case rec.TTL == 0:
		rec.TTL = 1
	case rec.TTL != 1 && (rec.TTL < 60 || rec.TTL > 86400):
		return ttlError()
	}
	if rec.Proxied {
		switch {
		case rec.Type != "A" && rec.Type != "AAAA" && rec.Type != "CNAME":
			return validationError(9004, "This record type cannot be proxied.")
		case !rec.proxiable():
			return newError(http.StatusBadRequest, 9003, fmt.Sprintf("Target %s is not allowed for a proxied record.", rec.Content))
		}
		rec.TTL = 1
	}
	return nil
}

const sameNameDoc = " For more details, refer to <https://developers.cloudflare.com/dns/manage-dns-records/troubleshooting/records-with-same-name/>."

// conflict checks rec against the other records of its zone: a CNAME
// shares its name with no other record, and no two records are identical.
func conflict(records map[string]Record, rec Record) error {
	for id, o := range records {
		if id == rec.ID || o.Name != rec.Name {
			continue
		}
		switch {
		case rec.Type == "CNAME":
			return newError(http.StatusBadRequest, 81053, "An A, AAAA, or CNAME record with that host already exists."+sameNameDoc)
		case o.Type == "CNAME":
			return newError(http.StatusBadRequest, 81054, "A CNAME record with that host already exists."+sameNameDoc)
		}
	}
	for id, o := range records {
		if id != rec.ID && o.Type == rec.Type && o.Name == rec.Name &&
			strings.EqualFold(o.Content, rec.Content) && o.Priority == rec.Priority {
			return newError(http.StatusBadRequest, 81058, "An identical record already exists.")
		}
	}
	return nil
}

// store validates rec, which replaces old (nil for a new record), against
// records (the zone's, or a batch's working copy), stamps it and puts it
// there. The lock must be held.
func (s *Server) store(records map[string]Record, zoneName string, rec Record, old *Record, now time.Time) (Record, error) {
	if err := validate(&rec, zoneName); err != nil {
		return Record{}, err
	}
	rec.ID, rec.CreatedOn = "", now
	prevComment, prevTags := "", []string(nil)
	if old != nil {
		rec.ID, rec.CreatedOn = old.ID, old.CreatedOn
		prevComment, prevTags = old.Comment, old.Tags
		rec.CommentModifiedOn, rec.TagsModifiedOn = old.CommentModifiedOn, old.TagsModifiedOn
	}
	if err := conflict(records, rec); err != nil {
		return Record{}, err
	}
	if old == nil {
		rec.ID = s.newID()
	}
	rec.ModifiedOn = now
	if rec.Comment != prevComment {
		rec.CommentModifiedOn = now
	}
	if !slices.Equal(rec.Tags, prevTags) {
		rec.TagsModifiedOn = now
	}
	records[rec.ID] = rec.clone()
	return rec, nil
}

func notFound() *apiError { return newError(http.StatusNotFound, 81044, "Record does not exist.") }

// AddRecord validates r like the API would and adds it to the zone; its
// name may be relative to the zone.
func (s *Server) AddRecord(zoneID string, r Record) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(zoneID)
	if z == nil {
		return Record{}, fmt.Errorf("no zone %s", zoneID)
	}
	return s.store(z.records, z.name, r.clone(), nil, time.Now().UTC())
}

// Records returns the zone's records by name, type and content.
func (s *Server) Records(zoneID string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if z := s.zone(zoneID); z != nil {
		return z.sorted()
	}
	return nil
}

// Record returns a copy of one record.
func (s *Server) Record(zoneID, id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zone(zoneID)
	if z == nil {
		return Record{}, false
	}
	rec, ok := z.records[id]
	return rec.clone(), ok
}

func (s *Server) recordsCreate(r *http.Request, c *call) (any, *resultInfo, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	var rec Record
	if err := decodeRecord(body, &rec); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err = s.store(c.zone.records, c.zone.name, rec, nil, time.Now().UTC())
	if err != nil {
		return nil, nil, err
	}
	return rec.wire(), nil, nil
}

func (s *Server) recordsGet(_ *http.Request, c *call) (any, *resultInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := c.zone.records[c.recordID]
	if !ok {
		return nil, nil, notFound()
	}
	return rec.wire(), nil, nil
}

// recordsUpdate answers PUT: the body replaces the whole record, so what
// it leaves out goes back to its default.
func (s *Server) recordsUpdate(r *http.Request, c *call) (any, *resultInfo, error) {
	return s.change(r, c, false)
}

// recordsEdit answers PATCH: the body changes only the fields it carries.
func (s *Server) recordsEdit(r *http.Request, c *call) (any, *resultInfo, error) {
	return s.change(r, c, true)
}

func (s *Server) change(r *http.Request, c *call, patch bool) (any, *resultInfo, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.replace(c.zone.records, c.zone.name, c.recordID, body, patch, time.Now().UTC())
	if err != nil {
		return nil, nil, err
	}
	return rec.wire(), nil, nil
}

// replace applies a PUT (patch false) or PATCH body to record id in
// records. The lock must be held.
func (s *Server) replace(records map[string]Record, zoneName, id string, body map[string]json.RawMessage, patch bool, now time.Time) (Record, error) {
	old, ok := records[id]
	if !ok {
		return Record{}, notFound()
	}
	var rec Record
	if patch {
		rec = old.clone()
	}
	if err := decodeRecord(body, &rec); err != nil {
		return Record{}, err
	}
	return s.store(records, zoneName, rec, &old, now)
}

func (s *Server) recordsDelete(_ *http.Request, c *call) (any, *resultInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := c.zone.records[c.recordID]; !ok {
		return nil, nil, notFound()
	}
	delete(c.zone.records, c.recordID)
	return map[string]string{"id": c.recordID}, nil, nil
}

// textOps are the operators of the list's text filters, as
// "name.contains=www"; all compare without case.
var textOps = map[string]func(field, v string) bool{
	"exact":      strings.EqualFold,
	"contains":   func(f, v string) bool { return strings.Contains(strings.ToLower(f), strings.ToLower(v)) },
	"startswith": func(f, v string) bool { return strings.HasPrefix(strings.ToLower(f), strings.ToLower(v)) },
	"endswith":   func(f, v string) bool { return strings.HasSuffix(strings.ToLower(f), strings.ToLower(v)) },
}

// orders are the fields a list can be ordered by.
var orders = map[string]func(a, b Record) int{
	"type":    func(a, b Record) int { return cmp.Compare(a.Type, b.Type) },
	"name":    func(a, b Record) int { return cmp.Compare(a.Name, b.Name) },
	"content": func(a, b Record) int { return cmp.Compare(a.Content, b.Content) },
	"ttl":     func(a, b Record) int { return cmp.Compare(a.TTL, b.TTL) },
	"proxied": func(a, b Record) int { return cmp.Compare(fmt.Sprint(a.Proxied), fmt.Sprint(b.Proxied)) },
}

// recordsList answers GET /dns_records with the filters type, name and
// content (plain for exact, or name.exact, name.contains, name.startswith,
// name.endswith and the same for content and comment), comment.present,
// comment.absent, proxied, match (all or any), order, direction, page and
// per_page (default 100).
func (s *Server) recordsList(r *http.Request, c *call) (any, *resultInfo, error) {
	q := r.URL.Query()
	var filters []func(Record) bool
	if v := q.Get("type"); v != "" {
		if !slices.Contains(recordTypes, strings.ToUpper(v)) {
			return nil, nil, validationError(9020, "Invalid DNS record type")
		}
		filters = append(filters, func(rec Record) bool { return strings.EqualFold(rec.Type, v) })
	}
	fields := map[string]func(Record) string{
		"name":    func(rec Record) string { return rec.Name },
		"content": func(rec Record) string { return rec.Content },
		"comment": func(rec Record) string { return rec.Comment },
	}
	for key, field := range fields {
		if v := q.Get(key); v != "" && key != "comment" {
			filters = append(filters, func(rec Record) bool { return strings.EqualFold(field(rec), v) })
		}
		for op, match := range textOps {
			if v := q.Get(key + "." + op); v != "" {
				filters = append(filters, func(rec Record) bool { return match(field(rec), v) })
			}
		}
	}
	if q.Has("comment.present") {
		filters = append(filters, func(rec Record) bool { return rec.Comment != "" })
	}
	if q.Has("comment.absent") {
		filters = append(filters, func(rec Record) bool { return rec.Comment == "" })
	}
	if v := q.Get("proxied"); v != "" {
		filters = append(filters, func(rec Record) bool { return fmt.Sprint(rec.Proxied) == v })
	}
	s.mu.Lock()
	all := c.zone.sorted()
	s.mu.Unlock()
	found := slices.DeleteFunc(all, func(rec Record) bool { return !matches(rec, filters, q.Get("match") == "any") })
	if by := orders[q.Get("order")]; by != nil {
		slices.SortStableFunc(found, by)
	}
	if q.Get("direction") == "desc" {
		slices.Reverse(found)
	}
	from, to, info := paginate(len(found), intParam(r, "page", 1, 1, 1<<30), intParam(r, "per_page", 100, 1, 5_000_000))
	out := make([]map[string]any, 0, to-from)
	for _, rec := range found[from:to] {
		out = append(out, rec.wire())
	}
	return out, info, nil
}
