// Package sim is a Cloudflare DNS API simulator: an http.Handler that speaks
// the /client/v4 wire protocol closely enough for
// github.com/cloudflare/cloudflare-go/v6 to work against it unchanged. It
// keeps zones and DNS records in memory, enforces the validation rules and
// per-token rate limit of the real API, answers refusals in Cloudflare's
// envelope with Cloudflare's error codes, and lets tests inject faults and
// read the log of calls that arrived.
//
// Control endpoints under /_sim/ (no token) expose the same controls over
// HTTP for `provisiond dev` and staging: simkit's calls and faults, and
// GET/POST /_sim/zones.
package sim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// AllZones, as the only zone of a token in Config.Tokens, gives the token
// access to every zone, present and future.
const AllZones = "*"

// DemoToken is the token a Server accepts when Config.Tokens is empty.
const DemoToken = "sim-demo-token-0123456789abcdefghijklmno"

// Config configures a Server.
type Config struct {
	// Tokens maps each accepted API token to the names of the zones it may
	// touch ([]string{AllZones} for all). A real token is 40 or more
	// characters of [A-Za-z0-9_-]; anything else is refused as a malformed
	// Authorization header, as the real API does. Default: DemoToken with
	// AllZones.
	Tokens map[string][]string
	// RatePerWindow is how many requests one token may make per Window
	// before it is answered 429; default 1200, the real limit.
	RatePerWindow int
	// Window is the rate limit's period; default 5 minutes, the real one.
	Window time.Duration
	// Seed seeds random faults and the ids of zones and records, so that a
	// failing run reproduces.
	Seed uint64
}

// Server is a simulated Cloudflare account. Its methods are safe for
// concurrent use. Faults and the call log are the embedded Kit's; a call's
// Target is the record id for calls on one record, else the zone id. No
// call starts a long-running operation, so Fault.TaskError never applies.
type Server struct {
	*simkit.Kit
	cfg Config
	mux *http.ServeMux

	mu      sync.Mutex
	rng     *rand.Rand
	zones   []*zone // in the order added
	windows map[string]*window
}

// window counts one token's requests in the current rate-limit window.
type window struct {
	start time.Time
	count int
}

// New returns a Server for cfg with no zones.
func New(cfg Config) *Server {
	if len(cfg.Tokens) == 0 {
		cfg.Tokens = map[string][]string{DemoToken: {AllZones}}
	}
	if cfg.RatePerWindow <= 0 {
		cfg.RatePerWindow = 1200
	}
	if cfg.Window <= 0 {
		cfg.Window = 5 * time.Minute
	}
	s := &Server{
		Kit:     simkit.New(cfg.Seed),
		cfg:     cfg,
		mux:     http.NewServeMux(),
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5bd1e9955bd1e995)),
		windows: map[string]*window{},
	}
	s.routes()
	return s
}

// Close releases hung requests.
func (s *Server) Close() { s.Kit.Close() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

const prefix = "/client/v4"

// handler answers one API request with the value for "result", the
// pagination of a list (nil otherwise), or an error.
type handler func(r *http.Request, c *call) (any, *resultInfo, error)

// call is what a handler knows about the request beyond *http.Request.
type call struct {
	token string
	// zone is the zone the path names, checked to exist and to be within
	// the token's reach; nil on /zones.
	zone *zone
	// recordID is the path's well-formed record id, if any.
	recordID string
}

func (s *Server) routes() {
	s.api("GET /zones", "zones.list", s.zonesList)
	s.api("GET /zones/{zone_id}", "zones.get", s.zonesGet)
	s.api("GET /zones/{zone_id}/dns_records", "records.list", s.recordsList)
	s.api("POST /zones/{zone_id}/dns_records", "records.create", s.recordsCreate)
	s.api("POST /zones/{zone_id}/dns_records/batch", "records.batch", s.recordsBatch)
	s.api("GET /zones/{zone_id}/dns_records/{dns_record_id}", "records.get", s.recordsGet)
	s.api("PUT /zones/{zone_id}/dns_records/{dns_record_id}", "records.update", s.recordsUpdate)
	s.api("PATCH /zones/{zone_id}/dns_records/{dns_record_id}", "records.edit", s.recordsEdit)
	s.api("DELETE /zones/{zone_id}/dns_records/{dns_record_id}", "records.delete", s.recordsDelete)
	s.mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusBadRequest, errs: []errItem{{Code: 7000, Message: "No route for that URI"}}})
	})
	s.control()
}

// api registers an authenticated API endpoint under /client/v4, logs each
// call and applies injected faults before the handler runs.
func (s *Server) api(pattern, op string, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
		target := r.PathValue("dns_record_id")
		if target == "" {
			target = r.PathValue("zone_id")
		}
		idx := s.Begin(r, op, target)
		s.Finish(idx, s.serve(w, r, op, target, h))
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, op, target string, h handler) int {
	token, err := s.authenticate(r)
	if err != nil {
		return writeError(w, err)
	}
	if err := s.throttle(token); err != nil {
		return writeError(w, err)
	}
	c := &call{token: token}
	if id := r.PathValue("zone_id"); id != "" {
		if c.zone, err = s.zoneFor(r, token, id); err != nil {
			return writeError(w, err)
		}
	}
	if id := r.PathValue("dns_record_id"); id != "" {
		if !idRE.MatchString(id) {
			return writeError(w, noRoute(r))
		}
		c.recordID = id
	}
	f := s.Next(op, target)
	if !s.Wait(r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		return writeError(w, faultError(f))
	}
	result, info, err := h(r, c)
	if err != nil {
		return writeError(w, err)
	}
	env := envelope{Success: true, Errors: []errItem{}, Messages: []errItem{}, Result: result, ResultInfo: info}
	if f.Drop {
		// The request was carried out; the client never learns of it.
		body, err := json.Marshal(env)
		if err != nil {
			return writeError(w, err)
		}
		simkit.DropMidResponse(w, http.Header{"Content-Type": {"application/json"}}, body)
		return http.StatusOK
	}
	simkit.WriteJSON(w, http.StatusOK, env)
	return http.StatusOK
}

// envelope is the body of every API answer.
type envelope struct {
	Success    bool        `json:"success"`
	Errors     []errItem   `json:"errors"`
	Messages   []errItem   `json:"messages"`
	Result     any         `json:"result"`
	ResultInfo *resultInfo `json:"result_info,omitempty"`
}

// resultInfo is the pagination of a list answer.
type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

// paginate returns the page of n items that page and perPage select, as
// [from, to) and its resultInfo. Like the real API, a page past the end is
// empty rather than an error, and an empty list still has one page.
func paginate(n, page, perPage int) (from, to int, info *resultInfo) {
	from = min(n, (page-1)*perPage)
	to = min(n, from+perPage)
	return from, to, &resultInfo{Page: page, PerPage: perPage, Count: to - from, TotalCount: n,
		TotalPages: max(1, (n+perPage-1)/perPage)}
}

// intParam reads a positive integer query parameter, def when absent or
// unusable, clamped to [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) int {
	n, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil {
		n = def
	}
	return min(max(n, lo), hi)
}

// errItem is one entry of "errors"; Cloudflare nests the detail of a
// validation failure in error_chain.
type errItem struct {
	Code    int       `json:"code"`
	Message string    `json:"message"`
	Chain   []errItem `json:"error_chain,omitempty"`
}

// apiError is an error answer.
type apiError struct {
	status     int
	errs       []errItem
	retryAfter time.Duration
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %d %s", e.status, e.errs[0].Code, e.errs[0].Message)
}

func newError(status, code int, msg string) *apiError {
	return &apiError{status: status, errs: []errItem{{Code: code, Message: msg}}}
}

// validationError is a DNS record refusal the real API wraps in 1004.
func validationError(code int, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, errs: []errItem{{Code: 1004, Message: "DNS Validation Error",
		Chain: []errItem{{Code: code, Message: msg}}}}}
}

// noRoute is Cloudflare's answer to a malformed or unknown object id in
// the path.
func noRoute(r *http.Request) *apiError {
	return newError(http.StatusBadRequest, 7003,
		fmt.Sprintf("Could not route to %s, perhaps your object identifier is invalid?", r.URL.Path))
}

// badBody is the answer to a body that is not JSON or has a field of the
// wrong JSON type.
func badBody() *apiError { return newError(http.StatusBadRequest, 9207, "Request body is invalid.") }

// faultCodeRE splits a fault message written as "81058: An identical
// record already exists." into Cloudflare's code and message.
var faultCodeRE = regexp.MustCompile(`^(\d+): (.*)$`)

// faultError is the answer to a Status fault: the fault's message, under
// the code it starts with ("81057: ..."), else the status as the code; a
// 429 without a message is Cloudflare's own throttling answer.
func faultError(f simkit.Fault) *apiError {
	msg, code := f.Message, f.Status
	if m := faultCodeRE.FindStringSubmatch(msg); m != nil {
		code, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if msg == "" {
		msg = http.StatusText(f.Status)
		if f.Status == http.StatusTooManyRequests {
			code, msg = throttled().errs[0].Code, throttled().errs[0].Message
		}
	}
	e := newError(f.Status, code, msg)
	e.retryAfter = f.RetryAfter
	return e
}

// throttled is the real API's answer to a token over its rate limit.
func throttled() *apiError {
	return newError(http.StatusTooManyRequests, 971, "Please wait and consider throttling your request speed")
}

// writeError writes err in Cloudflare's envelope and returns the status
// written.
func writeError(w http.ResponseWriter, err error) int {
	e, ok := err.(*apiError)
	if !ok {
		e = newError(http.StatusInternalServerError, http.StatusInternalServerError, err.Error())
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", simkit.RetryAfterSeconds(e.retryAfter))
	}
	simkit.WriteJSON(w, e.status, envelope{Errors: e.errs, Messages: []errItem{}})
	return e.status
}

// tokenRE is the shape of an API token: 40 characters (more for the newer
// prefixed ones) of the URL-safe alphabet.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{40,}$`)

// authenticate checks the "Authorization: Bearer <token>" header the way
// the real API does: a missing header, a malformed one and an unknown
// token each get their own refusal.
func (s *Server) authenticate(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", newError(http.StatusBadRequest, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
	}
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || !tokenRE.MatchString(token) {
		return "", &apiError{status: http.StatusBadRequest, errs: []errItem{{Code: 6003, Message: "Invalid request headers",
			Chain: []errItem{{Code: 6111, Message: "Invalid format for Authorization header"}}}}}
	}
	if _, ok := s.cfg.Tokens[token]; !ok {
		return "", newError(http.StatusForbidden, 9109, "Invalid access token")
	}
	return token, nil
}

// throttle counts a request against the token's window and refuses it
// once the window is spent, saying when the next window opens.
func (s *Server) throttle(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	win := s.windows[token]
	if win == nil || now.Sub(win.start) >= s.cfg.Window {
		win = &window{start: now}
		s.windows[token] = win
	}
	win.count++
	if win.count <= s.cfg.RatePerWindow {
		return nil
	}
	e := throttled()
	e.retryAfter = win.start.Add(s.cfg.Window).Sub(now)
	return e
}

// mayTouch reports whether the token reaches the zone; the lock must be
// held.
func (s *Server) mayTouch(token, zoneName string) bool {
	for _, name := range s.cfg.Tokens[token] {
		if name == AllZones || name == zoneName {
			return true
		}
	}
	return false
}

// idRE is the shape of every Cloudflare object id.
var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// newID returns a fresh 32-hex id; the lock must be held.
func (s *Server) newID() string {
	return fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
}
