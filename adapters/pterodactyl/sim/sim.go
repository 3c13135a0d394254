// Package sim is a Pterodactyl simulator: one http.Handler that is both the
// panel (the application API under /api/application and the client API
// under /api/client, with Pterodactyl's Fractal items and JSON:API errors)
// and its Wings node (the console websocket under /api/servers/{uuid}/ws
// and backup downloads under /download/backup). It keeps users, eggs,
// allocations, servers and backups in memory, installs servers, runs power
// actions, backups and restores as tasks that take real time, streams
// console output and stats to websocket viewers, and lets tests inject
// faults and read the log of calls that arrived.
//
// A call's Target in the log is the numeric server id on the application
// API (the external id on /servers/external), the 8-character identifier
// on the client API and the websocket, the backup uuid on calls about one
// backup and on downloads, the node id for node allocations and the egg id
// for eggs.
//
// Control endpoints under /_sim/ (no key) expose simkit's calls and faults
// and GET/POST /_sim/servers.
package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// Config configures a Server. Zero durations take the defaults.
type Config struct {
	// PanelURL is the panel's own address: the Origin Wings accepts on the
	// websocket and the issuer of its tokens. Default: the simulator's
	// base URL, as the panel and Wings share one address here.
	PanelURL string
	// AllowedOrigins are further Origins the websocket accepts, like
	// Wings' allowed_origins; "*" accepts any.
	AllowedOrigins []string
	// BaseURL is the simulator's externally visible address
	// ("http://127.0.0.1:8080") used in websocket and download URLs.
	// Default: taken from each request's Host.
	BaseURL string
	// NodeSecret signs the JWTs of nodes that have no Secret of their own.
	NodeSecret string
	// ApplicationKeys are the accepted application API keys ("ptla_...").
	ApplicationKeys []string
	// ClientKeys maps each accepted client API key ("ptlc_...") to the id
	// of the user it belongs to.
	ClientKeys map[string]int
	// TaskDuration is how long a power transition, a backup and a restore
	// take; default 100ms.
	TaskDuration time.Duration
	// InstallDuration is how long an install or reinstall runs; default
	// 200ms.
	InstallDuration time.Duration
	// StatsInterval is how often a running server sends stats to its
	// viewers; default 1s.
	StatsInterval time.Duration
	// ConsoleInterval is how often a running server prints a console line;
	// default 1s.
	ConsoleInterval time.Duration
	// TokenLifetime is how long a websocket JWT lives; default 10 minutes
	// as the panel issues them.
	TokenLifetime time.Duration
	// TokenCheckInterval is how often Wings checks a connection's JWT for
	// expiry; default 30s.
	TokenCheckInterval time.Duration
	// DownloadLifetime is how long a backup download URL works; default 15
	// minutes as the panel signs them.
	DownloadLifetime time.Duration
	// BackupThrottleLimit backups per BackupThrottlePeriod may be started
	// on one server; the real panel allows 2 per 10 minutes. Zero period
	// (the default) turns the throttle off so that tests can make many.
	BackupThrottleLimit  int
	BackupThrottlePeriod time.Duration
	// Seed seeds random faults, so that a failing run reproduces.
	Seed uint64
	// Panel is the world the panel starts with; nil loads DemoPanel().
	Panel *Panel
}

// Server is a simulated Pterodactyl panel with its Wings nodes. Its methods
// are safe for concurrent use. Faults and the call log are the embedded
// Kit's.
type Server struct {
	*simkit.Kit
	cfg      Config
	mux      *http.ServeMux
	bootTime time.Time
	// epoch is the created_at and updated_at of locations, nodes, eggs
	// and users: bootTime, or the saved one after Load, while bootTime
	// stays this Wings' boot. The lock guards it.
	epoch time.Time
	// offset is AdvanceClock's shift of the token clock, read without the
	// lock because tokens are checked while it is held.
	offset atomic.Int64

	mu        sync.Mutex
	closed    bool
	locations map[int]*Location
	nodes     map[int]*Node
	allocs    map[int]*Allocation
	eggs      map[int]*Egg
	users     map[int]*User
	servers   map[int]*serverState
	conns     map[*wsConn]bool
	downloads map[string]bool // unique ids of download tokens already used
}

// New returns a Server for cfg, loaded with cfg.Panel (or DemoPanel) and no
// game servers.
func New(cfg Config) *Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.TaskDuration, 100*time.Millisecond)
	def(&cfg.InstallDuration, 200*time.Millisecond)
	def(&cfg.StatsInterval, time.Second)
	def(&cfg.ConsoleInterval, time.Second)
	def(&cfg.TokenLifetime, 10*time.Minute)
	def(&cfg.TokenCheckInterval, 30*time.Second)
	def(&cfg.DownloadLifetime, 15*time.Minute)
	if cfg.NodeSecret == "" {
		cfg.NodeSecret = "wings-node-secret"
	}
	panel := DemoPanel()
	if cfg.Panel != nil {
		panel = *cfg.Panel
	}
	s := &Server{
		Kit:       simkit.New(cfg.Seed),
		cfg:       cfg,
		mux:       http.NewServeMux(),
		bootTime:  time.Now().Truncate(time.Second), // tokens carry whole seconds
		locations: map[int]*Location{},
		nodes:     map[int]*Node{},
		allocs:    map[int]*Allocation{},
		eggs:      map[int]*Egg{},
		users:     map[int]*User{},
		servers:   map[int]*serverState{},
		conns:     map[*wsConn]bool{},
		downloads: map[string]bool{},
	}
	s.epoch = s.bootTime
	s.load(panel)
	s.routes()
	go s.loop()
	return s
}

// Close stops every running task, closes websocket connections and
// releases hung requests.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.Kit.Close()
	for _, gs := range s.servers {
		gs.stopTimers()
		for _, b := range gs.backups {
			if b.timer != nil {
				b.timer.Stop()
			}
		}
	}
	for c := range s.conns {
		c.close()
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// AdvanceClock moves the clock that websocket and download tokens are
// issued and checked by, so that tests can reach an expiry without
// waiting for it.
func (s *Server) AdvanceClock(d time.Duration) { s.offset.Add(int64(d)) }

// now is the token clock.
func (s *Server) now() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

// keyKind says which API an endpoint belongs to and so which keys it takes.
type keyKind int

const (
	applicationAPI keyKind = iota
	clientAPI
)

// scope says which server an endpoint's path names, and so what its Target
// is.
type scope int

const (
	noServer     scope = iota
	appServer          // {id}: a numeric server id
	clientServer       // {server}: an identifier or uuid the key must own
)

// endpoint is one registered API route.
type endpoint struct {
	op    string
	kind  keyKind
	scope scope
	// param names the path value that is the call's Target when the call
	// is about something else than the server (a backup, a node, an egg).
	param string
	// state is the route name AuthenticateServerAccess checks the server's
	// status against: "view", "resources", "websocket" or "" for any other.
	state string
	h     handler
}

// handler carries out one API call: the status and body to answer, or an
// error in the panel's shape.
type handler func(r *http.Request, c *call) (int, any, error)

// call is what a handler knows about the request beyond *http.Request.
type call struct {
	user *User // nil for an application key
	srv  *serverState
	// taskError, when set by a fault, ends the task the call starts in
	// this error.
	taskError string
}

func (s *Server) routes() {
	app := func(pattern, op string, sc scope, h handler) {
		s.api(pattern, endpoint{op: op, kind: applicationAPI, scope: sc, h: h})
	}
	app("GET /api/application/servers", "servers.list", noServer, s.listServers)
	app("POST /api/application/servers", "servers.create", noServer, s.createServer)
	s.api("GET /api/application/servers/external/{external_id}", endpoint{op: "servers.external", kind: applicationAPI,
		param: "external_id", h: s.getExternalServer})
	app("GET /api/application/servers/{id}", "servers.get", appServer, s.getServer)
	app("PATCH /api/application/servers/{id}/details", "servers.details", appServer, s.updateDetails)
	app("PATCH /api/application/servers/{id}/build", "servers.build", appServer, s.updateBuild)
	app("PATCH /api/application/servers/{id}/startup", "servers.startup", appServer, s.updateStartup)
	app("POST /api/application/servers/{id}/reinstall", "servers.reinstall", appServer, s.reinstallServer)
	app("POST /api/application/servers/{id}/suspend", "servers.suspend", appServer, s.suspend(true))
	app("POST /api/application/servers/{id}/unsuspend", "servers.unsuspend", appServer, s.suspend(false))
	app("DELETE /api/application/servers/{id}", "servers.delete", appServer, s.deleteServer)
	app("DELETE /api/application/servers/{id}/force", "servers.forcedelete", appServer, s.deleteServer)
	s.api("GET /api/application/nests/{nest}/eggs/{egg}", endpoint{op: "eggs.get", kind: applicationAPI,
		param: "egg", h: s.getEgg})
	app("GET /api/application/nodes", "nodes.list", noServer, s.listNodes)
	s.api("GET /api/application/nodes/{node}/allocations", endpoint{op: "allocations.list", kind: applicationAPI,
		param: "node", h: s.listAllocations})
	app("GET /api/application/locations", "locations.list", noServer, s.listLocations)
	app("GET /api/application/users", "users.list", noServer, s.listUsers)
	app("POST /api/application/users", "users.create", noServer, s.createUser)

	client := func(pattern, op, state string, h handler) {
		s.api(pattern, endpoint{op: op, kind: clientAPI, scope: clientServer, state: state, h: h})
	}
	const cs = "/api/client/servers/{server}"
	client("GET "+cs, "client.server", "view", s.clientView)
	client("GET "+cs+"/resources", "client.resources", "resources", s.clientResources)
	client("POST "+cs+"/power", "client.power", "", s.clientPower)
	client("POST "+cs+"/command", "client.command", "", s.clientCommand)
	client("GET "+cs+"/websocket", "client.websocket", "websocket", s.clientWebsocket)
	client("GET "+cs+"/startup", "client.startup", "", s.clientStartup)
	client("PUT "+cs+"/startup/variable", "client.startup.variable", "", s.clientStartupVariable)
	client("GET "+cs+"/network/allocations", "client.allocations", "", s.clientAllocations)
	client("POST "+cs+"/settings/reinstall", "client.reinstall", "", s.clientReinstall)
	client("GET "+cs+"/backups", "backups.list", "", s.listBackups)
	client("POST "+cs+"/backups", "backups.create", "", s.createBackup)
	backup := func(pattern, op string, h handler) {
		s.api(pattern, endpoint{op: op, kind: clientAPI, scope: clientServer, param: "backup", h: h})
	}
	backup("GET "+cs+"/backups/{backup}", "backups.get", s.onBackup(s.getBackup))
	backup("GET "+cs+"/backups/{backup}/download", "backups.download", s.onBackup(s.downloadBackup))
	backup("POST "+cs+"/backups/{backup}/lock", "backups.lock", s.onBackup(s.lockBackup))
	backup("POST "+cs+"/backups/{backup}/restore", "backups.restore", s.onBackup(s.restoreBackup))
	backup("DELETE "+cs+"/backups/{backup}", "backups.delete", s.onBackup(s.deleteBackup))

	s.mux.HandleFunc("GET /api/servers/{uuid}/ws", s.serveWebsocket)
	s.mux.HandleFunc("GET /download/backup", s.fetchBackup)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, &apiError{status: http.StatusNotFound, code: "NotFoundHttpException",
			detail: fmt.Sprintf("The route %s could not be found.", strings.TrimPrefix(r.URL.Path, "/"))})
	})
	s.control()
}

// api registers an endpoint: it logs each call, authenticates the key,
// finds the server the path names, applies injected faults and then runs
// the handler.
func (s *Server) api(pattern string, ep endpoint) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		idx := s.Begin(r, ep.op, "")
		s.Finish(idx, s.serve(w, r, idx, ep))
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, idx int, ep endpoint) int {
	c := &call{}
	user, err := s.authenticate(r, ep.kind)
	if err != nil {
		return writeError(w, r, err)
	}
	c.user = user
	target := ""
	switch ep.scope {
	case appServer:
		target = r.PathValue("id")
	case clientServer:
		if c.srv, err = s.clientServer(r, user); err != nil {
			return writeError(w, r, err)
		}
		target = c.srv.Identifier
	}
	if ep.param != "" {
		target = r.PathValue(ep.param)
	}
	s.SetTarget(idx, target)
	f := s.Next(ep.op, target)
	if !s.Wait(r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		return writeError(w, r, faultError(f))
	}
	if c.srv != nil {
		if err := s.checkState(c.srv, ep.state, user); err != nil {
			return writeError(w, r, err)
		}
	}
	c.taskError = f.TaskError
	status, body, err := ep.h(r, c)
	if err != nil {
		return writeError(w, r, err)
	}
	var b []byte
	if body != nil {
		if b, err = json.Marshal(body); err != nil {
			return writeError(w, r, err)
		}
	}
	if f.Drop {
		// The call was carried out; the client never learns of it.
		if len(b) == 0 {
			dropConnection(w)
		} else {
			simkit.DropMidResponse(w, http.Header{"Content-Type": {"application/json"}}, b)
		}
		return status
	}
	if body == nil {
		w.WriteHeader(status)
		return status
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
	return status
}

// dropConnection closes the connection without an answer, for a dropped
// call whose answer has no body to cut in half.
func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	if conn, _, err := hj.Hijack(); err == nil {
		conn.Close()
	}
}

// authenticate checks the bearer key against the API the endpoint belongs
// to, as the panel's auth:sanctum and key-type middleware do.
func (s *Server) authenticate(r *http.Request, kind keyKind) (*User, error) {
	key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	isApp := key != "" && slices.Contains(s.cfg.ApplicationKeys, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	var user *User
	if id, ok := s.cfg.ClientKeys[key]; ok && key != "" {
		user = s.users[id]
	}
	switch {
	case !isApp && user == nil:
		return nil, &apiError{status: http.StatusUnauthorized, code: "AuthenticationException", detail: "Unauthenticated."}
	case kind == clientAPI && isApp:
		return nil, forbidden("You are attempting to use an application API key on an endpoint that requires a client API key.")
	case kind == applicationAPI && !isApp && !user.RootAdmin:
		// An account key reaches the application API only for a root admin.
		return nil, forbidden("This account does not have permission to access the API.")
	}
	return user, nil
}

// apiError is an error answer in the panel's JSON:API shape:
// {"errors":[{"code","status","detail","meta"?}]}.
type apiError struct {
	status     int
	code       string // the exception's class name
	detail     string
	retryAfter time.Duration
	fields     []fieldError // one error each, for a ValidationException
}

// fieldError is one failed validation rule.
type fieldError struct {
	field, rule, detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.detail) }

func notFound() *apiError {
	return &apiError{status: http.StatusNotFound, code: "NotFoundHttpException",
		detail: "The requested resource could not be found on the server."}
}

func forbidden(detail string) *apiError {
	return &apiError{status: http.StatusForbidden, code: "AccessDeniedHttpException", detail: detail}
}

func badRequest(detail string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "BadRequestHttpException", detail: detail}
}

// displayError is one of the panel's DisplayExceptions: a 400 named after
// its class.
func displayError(code, detail string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, detail: detail}
}

// faultCodes name the exception the panel would have thrown for a status.
var faultCodes = map[int][2]string{
	400: {"BadRequestHttpException", "Bad Request"},
	401: {"AuthenticationException", "Unauthenticated."},
	403: {"AccessDeniedHttpException", "This action is unauthorized."},
	404: {"NotFoundHttpException", "The requested resource could not be found on the server."},
	409: {"ConflictHttpException", "Conflict"},
	429: {"TooManyRequestsHttpException", "Too Many Attempts."},
	500: {"HttpException", "An unexpected error was encountered while processing this request, please try again."},
	502: {"DaemonConnectionException", "There was an exception while attempting to communicate with the daemon resulting in a HTTP/E_CONN_REFUSED response code. This exception has been logged."},
}

// faultError is the answer to a call refused by a fault.
func faultError(f simkit.Fault) *apiError {
	names, ok := faultCodes[f.Status]
	if !ok {
		names = [2]string{"HttpException", http.StatusText(f.Status)}
	}
	if f.Message != "" {
		names[1] = f.Message
	}
	return &apiError{status: f.Status, code: names[0], detail: names[1], retryAfter: f.RetryAfter}
}

// expectsJSON is Laravel's test for answering errors in JSON rather than
// with an HTML page or a redirect to the login.
func expectsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "/json") || strings.Contains(a, "+json")
}

// writeError writes err as the panel does and returns the status written.
func writeError(w http.ResponseWriter, r *http.Request, err error) int {
	e, ok := err.(*apiError)
	if !ok {
		e = &apiError{status: http.StatusInternalServerError, code: "HttpException", detail: err.Error()}
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", simkit.RetryAfterSeconds(e.retryAfter))
	}
	if !expectsJSON(r) {
		if e.status == http.StatusUnauthorized {
			http.Redirect(w, r, "/auth/login", http.StatusFound)
			return http.StatusFound
		}
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(e.status)
		fmt.Fprintf(w, "<!DOCTYPE html><html><head><title>%d</title></head><body>%s</body></html>", e.status, http.StatusText(e.status))
		return e.status
	}
	var errs []map[string]any
	for _, f := range e.fields {
		errs = append(errs, map[string]any{"code": e.code, "status": strconv.Itoa(e.status), "detail": f.detail,
			"meta": map[string]string{"source_field": f.field, "rule": f.rule}})
	}
	if len(errs) == 0 {
		errs = append(errs, map[string]any{"code": e.code, "status": strconv.Itoa(e.status), "detail": e.detail})
	}
	simkit.WriteJSON(w, e.status, map[string]any{"errors": errs})
	return e.status
}

// readBody decodes a JSON object body the way the panel's middleware
// leaves it: strings trimmed and empty strings turned into null. An empty
// body is an empty object.
func readBody(r *http.Request) (map[string]any, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return nil, badRequest(err.Error())
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest("The JSON data passed in the request appears to be malformed: Syntax error")
	}
	m, ok := normalize(v).(map[string]any)
	if !ok {
		m = map[string]any{}
	}
	return m, nil
}

// normalize applies Laravel's TrimStrings and ConvertEmptyStringsToNull.
func normalize(v any) any {
	switch v := v.(type) {
	case string:
		if t := strings.TrimSpace(v); t != "" {
			return t
		}
		return nil
	case map[string]any:
		for k, x := range v {
			v[k] = normalize(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalize(x)
		}
	}
	return v
}

// item is a Fractal item.
func item(object string, attributes map[string]any) map[string]any {
	return map[string]any{"object": object, "attributes": attributes}
}

// list is a Fractal collection without pagination.
func list(items []map[string]any) map[string]any {
	if items == nil {
		items = []map[string]any{}
	}
	return map[string]any{"object": "list", "data": items}
}

// paginate cuts one page out of n items the way Laravel's paginator does
// (?page, ?per_page up to maxPerPage) and returns its bounds and Fractal's
// pagination meta.
func paginate(r *http.Request, n, perPage, maxPerPage int) (from, to int, meta map[string]any) {
	q := r.URL.Query()
	if p, err := strconv.Atoi(q.Get("per_page")); err == nil && p > 0 {
		perPage = min(p, maxPerPage)
	}
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	last := max((n+perPage-1)/perPage, 1) // Laravel's last page is at least 1
	from = min((page-1)*perPage, n)
	to = min(from+perPage, n)
	url := baseURL(r, "") + r.URL.Path + "?page="
	links := map[string]string{}
	if page > 1 {
		links["previous"] = url + strconv.Itoa(page-1)
	}
	if page < last {
		links["next"] = url + strconv.Itoa(page+1)
	}
	meta = map[string]any{"pagination": map[string]any{
		"total": n, "count": to - from, "per_page": perPage, "current_page": page, "total_pages": last, "links": links,
	}}
	return from, to, meta
}

// paged is a Fractal collection of one page.
func paged(r *http.Request, items []map[string]any, perPage, maxPerPage int) map[string]any {
	from, to, meta := paginate(r, len(items), perPage, maxPerPage)
	out := list(items[from:to])
	out["meta"] = meta
	return out
}

// baseURL is the simulator's externally visible address: configured, or
// taken from the request.
func baseURL(r *http.Request, configured string) string {
	if configured != "" {
		return strings.TrimSuffix(configured, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// timestamp formats t as the panel's transformers do (Carbon's atom string).
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05-07:00") }

// includes reads ?include=a,b.
func includes(r *http.Request) []string {
	return strings.Split(r.URL.Query().Get("include"), ",")
}
