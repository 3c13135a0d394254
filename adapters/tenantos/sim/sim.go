// Package sim is a Tenantos API simulator: an http.Handler that speaks the
// /api wire protocol of the Tenantos bare-metal panel closely enough for a
// real client to work against it unchanged. It keeps servers in memory, runs
// power actions and reinstallations that take real time, serves the NoVNC
// console sessions it hands out, and lets tests inject faults and read the
// log of calls that arrived.
//
// Tenantos is a Laravel application: answers are {"result": ..., "message":
// "success"}, refusals are {"message": "..."} (plus {"errors": {...}} for a
// 422 validation failure), a bad key gets 401 "Unauthenticated.".
//
// Some wire details are guesses, as in the adapter (its wire.go): adding an
// IP assignment (POST .../ipassignments with ip, cidr, gateway,
// description) and deleting one (DELETE .../ipassignments/{assignmentId}),
// and the fields of the ipmi statistics (powerState, powerWatts,
// inletTemp, cpuTemp, fanRpm).
//
// Control endpoints under /_sim/ (no key) expose simkit's calls and faults
// and GET/POST /_sim/servers for `provisiond dev` and staging.
package sim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// Config configures a Server.
type Config struct {
	// APIKeys are the bearer keys the server accepts; default
	// "tenantos-sim-key".
	APIKeys []string
	// TaskDuration is how long a power action takes to change the power
	// state; default 100ms.
	TaskDuration time.Duration
	// InstallDuration is how long a reinstallation, rescue boot or disk wipe
	// runs through its phases; default 400ms.
	InstallDuration time.Duration
	// ConsoleTTL is how long a console session URL stays valid; default 5m.
	ConsoleTTL time.Duration
	// TrustForwardedFor takes the console client's IP from the first
	// X-Forwarded-For entry instead of the connection, as behind a proxy.
	TrustForwardedFor bool
	// PublicURL is the base of console accessUrls ("https://panel.example");
	// default the scheme and Host of the request that started the session.
	PublicURL string
	// Profiles are the installable OS, rescue and wipe profiles; default
	// DemoProfiles().
	Profiles []Profile
	// Seed seeds random faults, so that a failing run reproduces.
	Seed uint64
}

// Server is a simulated Tenantos panel. Its methods are safe for concurrent
// use. Faults and the call log are the embedded Kit's; a call's Target is the
// server id.
type Server struct {
	*simkit.Kit
	cfg Config
	mux *http.ServeMux

	mu       sync.Mutex
	machines map[int]*machine
	consoles map[string]*consoleSession
	installs map[int]int // reinstallations started per server id
}

// New returns a Server for cfg with no servers.
func New(cfg Config) *Server {
	if len(cfg.APIKeys) == 0 {
		cfg.APIKeys = []string{"tenantos-sim-key"}
	}
	if cfg.TaskDuration <= 0 {
		cfg.TaskDuration = 100 * time.Millisecond
	}
	if cfg.InstallDuration <= 0 {
		cfg.InstallDuration = 400 * time.Millisecond
	}
	if cfg.ConsoleTTL <= 0 {
		cfg.ConsoleTTL = 5 * time.Minute
	}
	if cfg.Profiles == nil {
		cfg.Profiles = DemoProfiles()
	}
	s := &Server{
		Kit:      simkit.New(cfg.Seed),
		cfg:      cfg,
		mux:      http.NewServeMux(),
		machines: map[int]*machine{},
		consoles: map[string]*consoleSession{},
		installs: map[int]int{},
	}
	s.routes()
	return s
}

// Close releases hung requests. State changes are computed from the clock
// when read, so no timers are left to stop.
func (s *Server) Close() { s.Kit.Close() }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handler answers one API request with the value for "result" or an error.
type handler func(r *http.Request, c *call) (any, error)

// call is what a handler knows about the request beyond *http.Request.
type call struct {
	// id is the server id of /api/servers/{id}/..., 0 elsewhere.
	id int
	// taskError, when set by a fault, is how the long operation the request
	// starts ends.
	taskError string
}

func (s *Server) routes() {
	s.api("GET /api/servers", "servers.list", s.listServers)
	s.api("POST /api/servers/getByTags", "servers.getByTags", s.serversByTags)
	s.api("GET /api/servers/{id}", "servers.get", s.onServer(s.getServer))
	s.api("PUT /api/servers/{id}", "servers.update", s.onServer(s.updateServer))
	s.api("GET /api/servers/{id}/ipassignments", "ipassignments.list", s.onServer(s.ipAssignments))
	s.api("POST /api/servers/{id}/ipassignments", "ipassignments.add", s.onServer(s.addIPAssignment))
	s.api("DELETE /api/servers/{id}/ipassignments/{assignmentId}", "ipassignments.delete", s.onServer(s.deleteIPAssignment))
	s.api("GET /api/servers/{id}/power/{method}", "power", s.onServer(s.power))
	s.api("GET /api/servers/{id}/provisioning/getProfiles", "provisioning.getProfiles", s.onServer(s.getProfiles))
	s.api("POST /api/servers/{id}/provisioning/startReinstallation", "provisioning.startReinstallation", s.onServer(s.startReinstallation))
	s.api("GET /api/servers/{id}/provisioning/getInstallStatus", "provisioning.getInstallStatus", s.onServer(s.installStatus))
	s.api("GET /api/servers/{id}/provisioning/stopReinstallation", "provisioning.stopReinstallation", s.onServer(s.stopReinstallation))
	s.api("GET /api/servers/{id}/console/start", "console.start", s.onServer(s.startConsole))
	s.api("POST /api/servers/{id}/stats/{category}/{mode}", "stats", s.onServer(s.stats))
	s.mux.HandleFunc("/api/", s.noRoute)
	s.mux.HandleFunc("GET /console/{token}", s.openConsole)
	s.control()
}

// noRoute answers a request no endpoint matches as Laravel's router does:
// 405 when the path exists for other methods, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	route := strings.TrimPrefix(r.URL.Path, "/")
	var allowed []string
	for _, method := range []string{"GET", "POST", "PUT", "DELETE"} {
		other := r.Clone(r.Context())
		other.Method = method
		if _, pattern := s.mux.Handler(other); pattern != "/api/" {
			allowed = append(allowed, method)
			if method == "GET" {
				allowed = append(allowed, "HEAD")
			}
		}
	}
	if len(allowed) == 0 {
		writeError(w, &apiError{Status: http.StatusNotFound, Message: fmt.Sprintf("The route %s could not be found.", route)})
		return
	}
	writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Message: fmt.Sprintf(
		"The %s method is not supported for route %s. Supported methods: %s.", r.Method, route, strings.Join(allowed, ", "))})
}

// api registers an authenticated endpoint, logs each call and applies
// injected faults before the handler runs. Ops of the power and stats
// families are completed from the path ("power.setPowerOn", "stats.cpu").
func (s *Server) api(pattern, op string, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		op := op
		switch op {
		case "power":
			op += "." + r.PathValue("method")
		case "stats":
			op += "." + r.PathValue("category")
		}
		idx := s.Begin(r, op, r.PathValue("id"))
		s.Finish(idx, s.serve(w, r, op, h))
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, op string, h handler) int {
	if !s.authorized(r) {
		return writeError(w, &apiError{Status: http.StatusUnauthorized, Message: "Unauthenticated."})
	}
	f := s.Next(op, r.PathValue("id"))
	if !s.Wait(r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		msg := f.Message
		if msg == "" {
			msg = defaultMessage(f.Status)
		}
		return writeError(w, &apiError{Status: f.Status, Message: msg, RetryAfter: f.RetryAfter})
	}
	c := &call{taskError: f.TaskError}
	if v := r.PathValue("id"); v != "" {
		// Laravel's route model binding: anything that is not an existing
		// id is a 404, checked by onServer.
		c.id, _ = strconv.Atoi(v)
	}
	result, err := h(r, c)
	if err != nil {
		return writeError(w, err)
	}
	body, err := json.Marshal(map[string]any{"result": result, "message": "success"})
	if err != nil {
		return writeError(w, &apiError{Status: http.StatusInternalServerError, Message: "Server Error"})
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	if f.Drop {
		// The request was carried out; the client never learns of it.
		simkit.DropMidResponse(w, hdr, body)
		return http.StatusOK
	}
	w.Header()["Content-Type"] = hdr["Content-Type"]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return http.StatusOK
}

// defaultMessage is what Laravel answers for a status raised without one.
func defaultMessage(status int) string {
	if status == http.StatusTooManyRequests {
		return "Too Many Attempts."
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		return "Server Error"
	}
	return http.StatusText(status)
}

// authorized checks the "Authorization: Bearer <key>" header.
func (s *Server) authorized(r *http.Request) bool {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && key != "" && slices.Contains(s.cfg.APIKeys, key)
}

// apiError is a refusal in Laravel's JSON shape.
type apiError struct {
	Status  int
	Message string
	// Errors are the per-field messages of a 422 validation failure.
	Errors     map[string][]string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// refuse is a refusal of the request in the server's current state.
func refuse(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// writeError writes err as Laravel renders it for a JSON client and returns
// the status written.
func writeError(w http.ResponseWriter, err error) int {
	e, ok := err.(*apiError)
	if !ok {
		e = &apiError{Status: http.StatusInternalServerError, Message: "Server Error"}
	}
	body := map[string]any{"message": e.Message}
	if len(e.Errors) > 0 {
		body["errors"] = e.Errors
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", simkit.RetryAfterSeconds(e.RetryAfter))
	}
	simkit.WriteJSON(w, e.Status, body)
	return e.Status
}

// input reads a request's parameters the way Laravel's $request->input()
// does: the query string, overlaid by a JSON body (when the Content-Type
// says JSON) or a form body. Query and form values are strings.
func input(r *http.Request) map[string]any {
	in := map[string]any{}
	for k, v := range r.URL.Query() {
		in[k] = v[0]
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.Contains(ct, "json"):
		var body map[string]any
		dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
		dec.UseNumber()
		// Laravel reads a malformed JSON body as empty, so the validation
		// that follows reports what is missing.
		if dec.Decode(&body) == nil {
			for k, v := range body {
				in[k] = v
			}
		}
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		if r.ParseForm() == nil {
			for k, v := range r.PostForm {
				in[k] = v[0]
			}
		}
	}
	return in
}

// clientIP is the address a console session is checked against.
func (s *Server) clientIP(r *http.Request) string {
	if s.cfg.TrustForwardedFor {
		if first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ","); strings.TrimSpace(first) != "" {
			return strings.TrimSpace(first)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
