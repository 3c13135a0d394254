// Package sim is an OpenProvider REST API (v1beta) simulator: an
// http.Handler that speaks /v1beta closely enough for an OpenProvider client
// to work against it unchanged. It keeps customers (contact handles) and
// domains in memory, logs in with expiring tokens, registers domains as a
// registry operation that takes real time (REQ, then ACT), enforces the
// registrar's rules with its error codes, and lets tests inject faults and
// read the log of calls that arrived.
//
// Control endpoints under /_sim/ (no token) expose the same controls over
// HTTP for `provisiond dev` and staging: simkit's calls and faults,
// GET /_sim/domains, GET /_sim/customers and POST /_sim/taken.
package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// Config configures a Server.
type Config struct {
	// Username and Password are the one reseller account that can log in.
	Username string
	Password string
	// TokenLifetime is how long a login token is accepted; default 48h,
	// as OpenProvider documents. Tests set it small to see re-login.
	TokenLifetime time.Duration
	// RegistrationDuration is how long a new domain stays REQ before the
	// registry makes it ACT; default 100ms.
	RegistrationDuration time.Duration
	// Seed seeds random faults, tokens, auth codes and handle numbers, so
	// that a failing run reproduces.
	Seed uint64
}

// resellerID is the simulated account's reseller id, as login and every
// object report it.
const resellerID = 123456

// Server is a simulated OpenProvider reseller account. Its methods are safe
// for concurrent use. Faults and the call log are the embedded Kit's; a
// call's Target is the domain id or the customer handle in its path, or for
// domains.create the domain name being registered.
type Server struct {
	*simkit.Kit
	cfg Config
	mux *http.ServeMux

	mu         sync.Mutex
	closed     bool
	rng        *rand.Rand
	tokens     map[string]time.Time // token → expiry
	domains    map[int]*Domain
	nextID     int
	customers  map[string]*Customer
	nextHandle int
	nextCustID int
	taken      map[string]bool
	premium    map[string]float64
	timers     []*time.Timer
}

// New returns a Server for cfg with no customers and no domains.
func New(cfg Config) *Server {
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = 48 * time.Hour
	}
	if cfg.RegistrationDuration <= 0 {
		cfg.RegistrationDuration = 100 * time.Millisecond
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d))
	s := &Server{
		Kit:        simkit.New(cfg.Seed),
		cfg:        cfg,
		mux:        http.NewServeMux(),
		rng:        rng,
		tokens:     map[string]time.Time{},
		domains:    map[int]*Domain{},
		nextID:     27000001,
		customers:  map[string]*Customer{},
		nextHandle: 100000 + rng.IntN(800000),
		nextCustID: 9000001,
		taken:      map[string]bool{},
		premium:    map[string]float64{},
	}
	s.routes()
	return s
}

// Close stops pending registrations and releases hung requests.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.Kit.Close()
	for _, t := range s.timers {
		t.Stop()
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

const prefix = "/v1beta"

// handler answers one API request with the value for "data" or an error.
type handler func(c *call) (any, error)

// call is what a handler knows about the request beyond *http.Request.
type call struct {
	r    *http.Request
	body []byte
	// taskError, when set by a fault, is how the registration the request
	// starts ends.
	taskError string
}

func (s *Server) routes() {
	s.public("POST /auth/login", "auth.login", s.login)
	s.api("POST /domains/check", "domains.check", s.checkDomains)
	s.api("POST /domains", "domains.create", s.createDomain)
	s.api("GET /domains", "domains.list", s.listDomains)
	s.api("GET /domains/{id}", "domains.get", s.getDomain)
	s.api("PUT /domains/{id}", "domains.update", s.updateDomain)
	s.api("DELETE /domains/{id}", "domains.delete", s.deleteDomain)
	s.api("POST /domains/{id}/renew", "domains.renew", s.renewDomain)
	s.api("GET /domains/{id}/authcode", "authcode.get", s.getAuthCode)
	s.api("POST /domains/{id}/authcode/reset", "authcode.reset", s.resetAuthCode)
	s.api("POST /customers", "customers.create", s.createCustomer)
	s.api("GET /customers", "customers.list", s.listCustomers)
	s.api("GET /customers/{handle}", "customers.get", s.getCustomer)
	s.api("PUT /customers/{handle}", "customers.update", s.updateCustomer)
	s.api("DELETE /customers/{handle}", "customers.delete", s.deleteCustomer)
	// grpc-gateway, which serves v1beta, answers unknown routes with gRPC
	// code 5 (NOT_FOUND).
	s.mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound(5, "Not Found"))
	})
	s.control()
}

// api registers an endpoint that needs a Bearer token.
func (s *Server) api(pattern, op string, h handler) { s.handle(pattern, op, true, h) }

// public registers an endpoint that needs no token.
func (s *Server) public(pattern, op string, h handler) { s.handle(pattern, op, false, h) }

// handle registers an endpoint under /v1beta, logs each call and applies
// injected faults before the handler runs.
func (s *Server) handle(pattern, op string, auth bool, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		target := r.PathValue("id") + r.PathValue("handle")
		if target == "" {
			target = domainTarget(body)
		}
		idx := s.Begin(r, op, target)
		if err != nil {
			s.Finish(idx, writeError(w, invalidArgument(err.Error())))
			return
		}
		s.Finish(idx, s.serve(w, &call{r: r, body: body}, op, target, auth, h))
	})
}

// domainTarget names the domain a request body is about, so that a fault
// can be aimed at the registration of one name.
func domainTarget(body []byte) string {
	var in struct {
		Domain struct{ Name, Extension string } `json:"domain"`
	}
	if json.Unmarshal(body, &in) != nil || in.Domain.Name == "" {
		return ""
	}
	return strings.ToLower(in.Domain.Name + "." + in.Domain.Extension)
}

func (s *Server) serve(w http.ResponseWriter, c *call, op, target string, auth bool, h handler) int {
	if auth {
		if err := s.authorize(c.r); err != nil {
			return writeError(w, err)
		}
	}
	f := s.Next(op, target)
	if !s.Wait(c.r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		return writeError(w, faultError(f))
	}
	c.taskError = f.TaskError
	data, err := h(c)
	if err != nil {
		return writeError(w, err)
	}
	env := envelope{Code: 0, Desc: "", Data: data}
	if f.Drop {
		// The request was carried out; the client never learns of it.
		body, merr := json.Marshal(env)
		if merr != nil {
			return writeError(w, merr)
		}
		simkit.DropMidResponse(w, http.Header{"Content-Type": {"application/json"}}, body)
		return http.StatusOK
	}
	simkit.WriteJSON(w, http.StatusOK, env)
	return http.StatusOK
}

// envelope is every v1beta answer: code 0 with data, or an error code with
// desc (and sometimes a string of detail in data).
type envelope struct {
	Code int    `json:"code"`
	Desc string `json:"desc"`
	Data any    `json:"data,omitempty"`
}

// apiError is an error answer: OpenProvider's code and desc with the HTTP
// status it comes with.
type apiError struct {
	Status     int
	Code       int
	Desc       string
	Data       string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %d %s", e.Status, e.Code, e.Desc) }

// invalid is a request OpenProvider refuses for its content.
func invalid(code int, desc string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Desc: desc}
}

// notFound is a request about an object the account does not have.
func notFound(code int, desc string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: code, Desc: desc}
}

// with adds a string of detail, which v1beta sends as the error's data.
func (e *apiError) with(data string) *apiError {
	e.Data = data
	return e
}

// invalidArgument is a request grpc-gateway refuses before OpenProvider sees
// it (malformed JSON, a wrong type): gRPC code 3, INVALID_ARGUMENT.
func invalidArgument(desc string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: 3, Desc: desc}
}

// authFailed is code 196, which OpenProvider answers for a bad login and a
// missing, unknown or expired token alike.
func authFailed(status int) *apiError {
	return &apiError{Status: status, Code: 196, Desc: "Authentication/Authorization Failed"}
}

// faultError is an injected Status fault in OpenProvider's envelope: 196
// for a 401, so that clients re-login as they would for real, otherwise
// 999, "An unknown error occurred".
func faultError(f simkit.Fault) *apiError {
	desc := f.Message
	if desc == "" {
		desc = http.StatusText(f.Status)
	}
	code := 999
	if f.Status == http.StatusUnauthorized {
		code = 196
	}
	return &apiError{Status: f.Status, Code: code, Desc: desc, RetryAfter: f.RetryAfter}
}

// writeError writes err in the envelope and returns the status written.
func writeError(w http.ResponseWriter, err error) int {
	e, ok := err.(*apiError)
	if !ok {
		e = &apiError{Status: http.StatusInternalServerError, Code: 999, Desc: "An unknown error occurred", Data: err.Error()}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", simkit.RetryAfterSeconds(e.RetryAfter))
	}
	env := envelope{Code: e.Code, Desc: e.Desc}
	if e.Data != "" {
		env.Data = e.Data
	}
	simkit.WriteJSON(w, e.Status, env)
	return e.Status
}

// decode reads the JSON body into v the way grpc-gateway does: an empty
// body is an empty message and unknown fields are ignored, but a wrong type
// is refused.
func decode(c *call, v any) error {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return invalidArgument(err.Error())
	}
	return nil
}

// number is an int32 field, which protojson accepts as a JSON number or as
// a numeric string.
type number int

// UnmarshalJSON implements json.Unmarshaler.
func (n *number) UnmarshalJSON(b []byte) error {
	v := string(b)
	if v == "null" {
		return nil
	}
	if u, err := strconv.Unquote(v); err == nil {
		v = u
	}
	i, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return fmt.Errorf("invalid value for int32 type: %s", b)
	}
	*n = number(i)
	return nil
}

// queryInt reads an integer query parameter, refusing a malformed one as
// grpc-gateway does.
func queryInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	i, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, invalidArgument(fmt.Sprintf("type mismatch, parameter: %s, error: %v", name, err))
	}
	return int(i), nil
}

// page cuts a listing by the limit and offset query parameters.
func page[T any](r *http.Request, all []T) ([]T, error) {
	limit, err := queryInt(r, "limit", 100)
	if err != nil {
		return nil, err
	}
	offset, err := queryInt(r, "offset", 0)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	from := min(max(offset, 0), len(all))
	return all[from:min(len(all), from+limit)], nil
}

// dateFormat is how v1beta writes dates: "2019-04-29 17:15:19".
const dateFormat = "2006-01-02 15:04:05"

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(dateFormat)
}
