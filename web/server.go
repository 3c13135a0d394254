// Package web is the fleet's HTTP API: authentication by API key, scopes,
// per-key rate limits, the seeds' response envelope, job event streams, and
// the operators' dashboard and metrics.
package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/monitoring/metrics"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web/apikey"
)

// Config tunes the API.
type Config struct {
	// RateLimit is the default number of requests per minute per key; a key
	// may carry its own.
	RateLimit int
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// matching a key's IP allowlist.
	TrustedProxies []netip.Prefix
	// OperatorUser and OperatorPassword guard the queue dashboard. Without a
	// password the dashboard is off.
	OperatorUser, OperatorPassword string
	// KeepAlive is how often an idle event stream sends a comment line.
	KeepAlive time.Duration
	// ViewerKey signs game console viewer tokens; without it there are none.
	ViewerKey []byte
	// Now, when set, is the clock cancellations and renewals are timed by;
	// tests set it to reach a termination days away.
	Now func() time.Time
}

// Server serves the API. Its fields are its dependencies.
type Server struct {
	Config    Config
	Queries   *queries.Queries
	Keys      *apikey.Cache
	Jobs      *jobs.Client
	Events    *jobs.EventHub
	Inspector *asynq.Inspector
	Limiter   *redis_rate.Limiter
	Metrics   *metrics.Metrics
	// Dashboard is the asynqmon handler, mounted at /monitoring/queues/.
	Dashboard http.Handler
	// Services carries out the service use cases (create, cancel, renew, ...).
	Services *service.Services
	// Providers are the providers this process runs, by name (see
	// jobs.Provider).
	Providers *jobs.Registry
	// VPS answers Proxmox services' live reads (templates, status,
	// traffic, backups, the console) and registrations; nil when this
	// process has no Proxmox configuration.
	VPS *jobs.VPSWorkers
	// Games answers game servers' live reads and carries their consoles to
	// viewers (its Consoles hub); nil when this process has no Pterodactyl
	// configuration.
	Games *jobs.GameWorkers
	// BareMetal answers bare-metal services' live reads (the server, its
	// profiles, statistics, the console); nil when this process has no
	// Tenantos configuration.
	BareMetal *jobs.BareMetalWorkers
	// Webhooks decides which webhook URLs teams may set (a webhook.Guard):
	// "" for an allowed one, else why not.
	Webhooks interface {
		CheckURL(ctx context.Context, raw string) string
	}
	Log *slog.Logger

	// permissions are the API routes' declared permissions, by pattern
	// (see access.go), as Handler registered them.
	permissions map[string]string
}

// Handler returns the routed, instrumented API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Every API route declares the permission it needs (see access.go);
	// one place decides it.
	api := func(perm string, h handlerFunc) http.Handler {
		return s.authenticate(s.rateLimit(s.authorize(s.handle(func(w http.ResponseWriter, r *http.Request) error {
			return h(w, withPermission(r, perm))
		}))))
	}
	s.permissions = map[string]string{}
	route := func(pattern, perm string, h handlerFunc) {
		s.permissions[pattern] = perm
		mux.Handle(pattern, api(perm, h))
	}
	mux.Handle("GET /api/ping", s.handle(s.ping))
	mux.Handle("GET /api/openapi.json", s.handle(s.openAPIJSON))
	mux.Handle("GET /api/docs", s.handle(s.docs))
	// Any valid key may say who it is, whatever its scopes.
	mux.Handle("GET /api/me", s.authenticate(s.rateLimit(s.handle(s.me))))
	route("GET /api/services", permTeam, s.listServices)
	route("POST /api/services", permPlatform, s.createService)
	route("GET /api/services/{id}", "view", s.getService)
	route("POST /api/services/{id}/action", permAction, s.serviceAction)
	route("GET /api/services/{id}/templates", "view", s.templates)
	route("POST /api/services/{id}/cancel", "delete", s.cancelService)
	route("GET /api/services/{id}/alert-rules", "view", s.listAlertRules)
	route("POST /api/services/{id}/alert-rules", "settings", s.createAlertRule)
	route("PATCH /api/services/{id}/alert-rules/{ruleId}", "settings", s.updateAlertRule)
	route("DELETE /api/services/{id}/alert-rules/{ruleId}", "settings", s.deleteAlertRule)
	route("GET /api/services/{id}/fired-alerts", "view", s.firedAlerts)
	route("GET /api/services/{id}/metrics", "view", s.serviceMetrics)
	route("DELETE /api/services/{id}/metrics", "settings", s.deleteServiceMetrics)
	route("GET /api/teams/{teamId}/monitoring-settings", permTeam, s.monitoringSettings)
	route("PATCH /api/teams/{teamId}/monitoring-settings", permTeamAdmin, s.monitoringSettings)
	route("POST /api/services/{id}/withdraw-cancellation", "delete", s.withdrawCancellation)
	route("POST /api/services/{id}/renew", "settings", s.renew)
	route("POST /api/services/{id}/ips/cancel", "settings", s.ipCancellation)
	route("DELETE /api/services/{id}/ips/cancel", "settings", s.ipCancellation)
	route("GET /api/services/{id}/status", "view", s.serviceStatus)
	route("GET /api/services/{id}/traffic", "view", s.traffic)
	route("POST /api/services/{id}/repair", "settings", s.repair)
	route("POST /api/services/{id}/verify", "view", s.verify)
	route("POST /api/services/{id}/reinstall", "settings", s.unlessSuspended(s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.reinstall, jobs.ProviderPterodactyl: s.reinstallGame, jobs.ProviderTenantos: s.reinstallBareMetal})))
	route("GET /api/services/{id}/backups", "backup", s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.listBackups, jobs.ProviderPterodactyl: s.gameBackups()}))
	route("POST /api/services/{id}/backups", "backup_create", s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.createBackup, jobs.ProviderPterodactyl: s.createGameBackup}))
	route("POST /api/services/{id}/backups/{backupId}", "backup_restore", s.unlessSuspended(s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.restoreBackup, jobs.ProviderPterodactyl: s.gameBackupAction})))
	route("DELETE /api/services/{id}/backups/{backupId}", "backup_delete", s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.deleteBackup, jobs.ProviderPterodactyl: s.gameBackupAction}))
	route("GET /api/services/{id}/backups/{backupId}/download", "backup", s.gameBackupDownload())
	route("GET /api/services/{id}/startup-variables", "view", s.startupVariables)
	route("PUT /api/services/{id}/startup-variables", "settings", s.startupVariables)
	route("GET /api/services/{id}/allocations", "view", s.allocations())
	route("POST /api/services/{id}/console", "console", s.unlessSuspended(s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.openConsole, jobs.ProviderPterodactyl: s.gameConsole, jobs.ProviderTenantos: s.bareMetalConsole})))
	// A viewer token stands for the key that asked for the console.
	s.permissions["GET /api/services/{id}/console/stream"] = "console"
	mux.Handle("GET /api/services/{id}/console/stream", s.gameStreamRoute(api("console", s.gameStream)))
	route("POST /api/services/{id}/console/command", "console", s.unlessSuspended(s.consoleCommand))
	mux.Handle("GET /api/console/{token}", s.handle(s.consoleGateway))
	mux.Handle("GET "+noVNCPath+"/", noVNC())
	mux.Handle("GET /console/{token}", s.handle(s.consoleEmbed))
	route("POST /api/services/{id}/rescue", "settings", s.unlessSuspended(s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.rescue, jobs.ProviderTenantos: s.rescueBareMetal})))
	route("DELETE /api/services/{id}/rescue", "settings", s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.rescue, jobs.ProviderTenantos: s.rescueBareMetal}))
	route("GET /api/services/{id}/bare-metal", "view", s.getBareMetal)
	route("GET /api/services/{id}/bare-metal/profiles", "view", s.bareMetalProfiles)
	route("POST /api/services/{id}/bare-metal/reinstall", "settings", s.unlessSuspended(s.reinstallBareMetal))
	route("POST /api/services/{id}/bare-metal/rescue", "settings", s.unlessSuspended(s.rescueBareMetal))
	route("DELETE /api/services/{id}/bare-metal/rescue", "settings", s.rescueBareMetal)
	route("POST /api/services/{id}/bare-metal/power", permAction, s.bareMetalPower)
	route("POST /api/services/{id}/bare-metal/console", "console", s.unlessSuspended(s.bareMetalConsole))
	route("POST /api/services/{id}/bare-metal/stats", "view", s.bareMetalStats)
	route("GET /api/services/{id}/bare-metal/notes", "view", s.bareMetalNotes)
	route("PATCH /api/services/{id}/bare-metal/notes", "settings", s.bareMetalNotes)
	route("GET /api/services/{id}/upgrade", "view", s.upgradeInfo)
	route("POST /api/services/{id}/upgrade", "settings", s.unlessSuspended(s.upgrade))
	route("POST /api/services/{id}/change-plan", "settings", s.unlessSuspended(s.byProvider(map[string]handlerFunc{
		jobs.ProviderProxmox: s.changePlan, jobs.ProviderPterodactyl: s.changeGamePlan})))
	route("POST /api/services/{id}/apply-downgrade", "settings", s.unlessSuspended(s.applyDowngrade))
	route("GET /api/teams/{teamId}/members", permTeam, s.listMembers)
	route("POST /api/teams/{teamId}/members", permTeamAdmin, s.addMember)
	route("PATCH /api/teams/{teamId}/members/{personId}", permTeamAdmin, s.changeMemberRole)
	route("DELETE /api/teams/{teamId}/members/{personId}", permTeamAdmin, s.removeMember)
	route("POST /api/teams/{teamId}/leave", permTeamPerson, s.leaveTeam)
	route("GET /api/permissions", "manage_permissions", s.listGrants)
	route("POST /api/permissions", "manage_permissions", s.createGrant)
	route("PATCH /api/permissions/{id}", "manage_permissions", s.updateGrant)
	route("DELETE /api/permissions/{id}", "manage_permissions", s.revokeGrant)
	route("GET /api/permissions/{id}/details", permPerson, s.grantDetails)
	route("POST /api/permissions/accept", permPerson, s.respondToGrant("accepted"))
	route("POST /api/permissions/decline", permPerson, s.respondToGrant("declined"))
	route("GET /api/permissions/me", permPerson, s.sharedWithMe)
	route("GET /api/jobs", permTeam, s.listJobs)
	route("GET /api/jobs/{id}", permJob, s.getJob)
	route("GET /api/jobs/{id}/events", permJob, s.jobEvents)
	route("POST /api/jobs/{id}/cancel", permJob, s.cancelJob)
	mux.Handle("/api/", s.handle(s.unknownRoute(mux)))
	mux.Handle("/", s.handle(s.unknownRoute(mux))) // the envelope's 404 outside /api/ too

	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	if s.Dashboard != nil && s.Config.OperatorPassword != "" {
		mux.Handle("/monitoring/queues/", s.operatorOnly(s.Dashboard))
	} else {
		mux.HandleFunc("/monitoring/queues/", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "The queue dashboard is off: set OPERATOR_PASSWORD to turn it on.", http.StatusServiceUnavailable)
		})
	}
	mux.Handle("GET /monitoring/queues", http.RedirectHandler("/monitoring/queues/", http.StatusMovedPermanently))
	return s.instrument(s.recoverPanics(checkText(mux)))
}

// handlerFunc is an API handler; an error it returns is answered in the
// envelope (an *apiError as it is, anything else as a logged 500).
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var se *service.Error
	if errors.As(err, &se) {
		ae = fromServiceError(se)
	} else if !errors.As(err, &ae) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client left
		}
		s.logger(r).Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = errInternal
	}
	ae.write(w)
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) error {
	ok(w, http.StatusOK, "message", "pong", "time", time.Now().UTC())
	return nil
}

// unknownRoute answers paths under /api/ that match no route: 405 when the
// path exists for another method, 404 otherwise, both in the envelope.
func (s *Server) unknownRoute(mux *http.ServeMux) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/api/" && pattern != "/" && pattern != "" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			return &apiError{Status: http.StatusMethodNotAllowed, Message: fmt.Sprintf("Method %s is not allowed here", r.Method)}
		}
		return &apiError{Status: http.StatusNotFound, Message: "Not found"}
	}
}

// statusWriter remembers the status code for metrics and logs. It passes
// Flush (through Unwrap) and Hijack through, so that event streams and
// websockets work.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.code == 0 {
		sw.code = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.code == 0 {
		sw.code = http.StatusOK
	}
	return sw.ResponseWriter.Write(b)
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

// Hijack hands the connection over, as websocket upgraders ask for it by
// type assertion rather than through Unwrap.
func (sw *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(sw.ResponseWriter).Hijack()
	if err == nil && sw.code == 0 {
		sw.code = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.Metrics.ObserveHTTP(route, methodLabel(r.Method), sw.code, time.Since(start))
	})
}

// methodLabel is the method as a metric label: anyone may send any method,
// and each made-up one must not become a series of its own.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				errInternal.write(w)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
