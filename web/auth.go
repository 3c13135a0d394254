package web

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web/apikey"
)

type ctxKey int

const callerKey ctxKey = iota

// caller is the authenticated key behind a request.
type caller struct {
	key queries.ApiKey
	// email is the key's person's, "" for a key of the whole team (or a
	// platform key).
	email string
	// role is the key's role in its team: its person's, or owner for a
	// key of the whole team.
	role string
}

func callerOf(r *http.Request) *caller {
	c, _ := r.Context().Value(callerKey).(*caller)
	return c
}

// errPlatformOnly answers a team key's attempt at what only the platform
// (the checkout, billing, an operator) may do.
var errPlatformOnly = &apiError{Status: http.StatusForbidden, ErrorKey: "platform_key_required",
	Message: "This needs a platform key (provisiond keys create --platform); a team's key cannot do it"}

// listTeam is the team whose resources a list shows: the key's own, or for
// a platform key the one its teamId query parameter names (required). It
// returns a validation message for a teamId that cannot be read, and 404
// for another team's.
func (c *caller) listTeam(r *http.Request) (uuid.UUID, string, error) {
	v := r.URL.Query().Get("teamId")
	if !c.key.Platform {
		if v != "" && v != c.key.TeamID.String() {
			if _, err := uuid.Parse(v); err != nil {
				return uuid.Nil, "teamId must be a team id", nil
			}
			return uuid.Nil, "", notFound("Team")
		}
		return c.key.TeamID, "", nil
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, "teamId is required with a platform key, as a team id", nil
	}
	return id, "", nil
}

// requestedBy is who a job says asked for it: the person and their key's
// prefix, or the key's prefix alone for a key of no person.
func (c *caller) requestedBy() string {
	if c.email != "" {
		return c.email + " (api key " + c.key.Prefix + ")"
	}
	return "api key " + c.key.Prefix
}

// logger returns the server's logger with the caller's team and key.
func (s *Server) logger(r *http.Request) *slog.Logger {
	if c := callerOf(r); c != nil {
		return s.Log.With("team_id", c.key.TeamID, "key", c.key.Prefix)
	}
	return s.Log
}

var (
	errNoKey      = &apiError{Status: http.StatusUnauthorized, Message: "Authentication required"}
	errBadKey     = &apiError{Status: http.StatusUnauthorized, Message: "Invalid API key"}
	errExpiredKey = &apiError{Status: http.StatusUnauthorized, Message: "API key expired"}
	errKeyIP      = &apiError{Status: http.StatusUnauthorized, Message: "API key not allowed from this IP address"}
	errScope      = &apiError{Status: http.StatusForbidden, Message: "Insufficient API key permissions"}
)

// presentedKey reads the key from `x-api-key` (seed 000) or
// `Authorization: Bearer sk_...` (seed 002).
func presentedKey(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("X-Api-Key")); k != "" {
		return k
	}
	scheme, token, found := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if found && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

// authenticate finds the request's key and refuses the request when there is
// none, it is unknown, revoked or expired, or the client's address is not on
// its allowlist.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		raw := presentedKey(r)
		if raw == "" {
			return errNoKey
		}
		if !apikey.WellFormed(raw) {
			return errBadKey
		}
		row, err := s.Keys.Lookup(r.Context(), apikey.Hash(raw))
		key := row.ApiKey
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return errBadKey
		case err != nil:
			return err
		case key.RevokedAt != nil, row.Role == "":
			// A person's key outlives neither its revocation nor the
			// person's membership of its team.
			return errBadKey
		case key.ExpiresAt != nil && !key.ExpiresAt.After(time.Now()):
			return errExpiredKey
		case len(key.IpAllowlist) > 0 && !allowed(key.IpAllowlist, s.clientIP(r)):
			return errKeyIP
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey, &caller{key: key, email: row.Email, role: row.Role})))
		return nil
	})
}

func allowed(list []netip.Prefix, ip netip.Addr) bool {
	return ip.IsValid() && slices.ContainsFunc(list, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// clientIP is the peer's address, or the last untrusted hop of
// X-Forwarded-For when the peer is a trusted proxy.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if !allowed(s.Config.TrustedProxies, ip) {
		return ip
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip
		}
		ip = hop.Unmap()
		if !allowed(s.Config.TrustedProxies, ip) {
			return ip
		}
	}
	return ip
}

// requiredScope maps a request to the scope it needs, after seed 002's
// table: read scopes for GET and HEAD, write scopes for the rest. Jobs are
// the work done on services and take the services scopes.
// callerMay reports whether the caller's key has scope (a key without
// scopes has every one).
func callerMay(r *http.Request, scope string) bool {
	scopes := callerOf(r).key.Scopes
	return len(scopes) == 0 || slices.Contains(scopes, scope)
}

func requiredScope(method, path string) string {
	resource := "services"
	switch {
	case strings.HasPrefix(path, "/api/zones"):
		resource = "dns"
	case strings.HasPrefix(path, "/api/domains"):
		resource = "domains"
	case strings.HasPrefix(path, "/api/billing"):
		resource = "billing"
	case strings.HasPrefix(path, "/api/tickets"):
		resource = "tickets"
	case strings.HasPrefix(path, "/api/teams"):
		resource = "teams"
		if strings.Contains(path, "/backup") {
			resource = "backups"
		}
	}
	if method == http.MethodGet || method == http.MethodHead {
		return resource + ".read"
	}
	return resource + ".write"
}

// authorize refuses a key whose scopes do not cover the request. A key
// without scopes has full access.
func (s *Server) authorize(next http.Handler) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		if !callerMay(r, requiredScope(r.Method, r.URL.Path)) {
			return errScope
		}
		if !callerOf(r).key.Platform {
			body, aerr := readBody(w, r)
			if aerr != nil {
				return aerr
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if PlatformRequest(r.Method, r.URL.Path, body) {
				return errPlatformOnly
			}
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

// PlatformRequest reports whether only a platform key may make the request:
// what the seeds give to the checkout, billing or a platform admin — a new
// service (POST /api/services), a renewal, and the power actions suspend
// and resume (suspension is for payment). Clients that hold both kinds of
// key use it to pick one.
func PlatformRequest(method, path string, body []byte) bool {
	switch {
	case method != http.MethodPost:
		return false
	case path == "/api/services", strings.HasPrefix(path, "/api/services/") && strings.HasSuffix(path, "/renew"):
		return true
	case strings.HasPrefix(path, "/api/services/") && strings.HasSuffix(path, "/action"):
		var req actionRequest // read as the action's handler reads it
		return json.Unmarshal(body, &req) == nil && (req.Action == "suspend" || req.Action == "resume")
	}
	return false
}

// rateLimitOf is the key's requests per minute: its own, or the server's
// default.
func (s *Server) rateLimitOf(k queries.ApiKey) int {
	if k.RateLimit > 0 {
		return int(k.RateLimit)
	}
	return s.Config.RateLimit
}

// rateLimit allows each key its requests per minute (GCRA in Redis, shared
// by every API process) and reports the budget in X-RateLimit-* headers.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		c := callerOf(r)
		limit := s.rateLimitOf(c.key)
		res, err := s.Limiter.Allow(r.Context(), "ratelimit:key:"+c.key.ID.String(), redis_rate.PerMinute(limit))
		if err != nil {
			// Redis being away must not take the API down with it.
			s.logger(r).Warn("rate limiter unavailable; request let through", "err", err)
			next.ServeHTTP(w, r)
			return nil
		}
		h := w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(res.ResetAfter).UnixMilli(), 10))
		if res.Allowed == 0 {
			secs := retryAfterSeconds(res.RetryAfter.Seconds())
			h.Set("Retry-After", secs)
			n, _ := strconv.Atoi(secs)
			return &apiError{Status: http.StatusTooManyRequests, Message: "Rate limit exceeded", Extra: envelope{"retryAfter": n}}
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

// operatorOnly guards operator pages with HTTP basic auth.
func (s *Server) operatorOnly(next http.Handler) http.Handler {
	want := []byte(s.Config.OperatorUser + ":" + s.Config.OperatorPassword)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		if subtle.ConstantTimeCompare([]byte(user+":"+pass), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="provisiond operators", charset="UTF-8"`)
			http.Error(w, "operator credentials required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// meJSON is what GET /api/me answers: the calling key, its team, the
// person it belongs to (null for a key of the whole team or a platform
// key) with their role, and what is shared with that person.
type meJSON struct {
	Key    keyJSON     `json:"key"`
	Team   teamJSON    `json:"team"`
	Person *personJSON `json:"person"`
	// Role is the key's role in its team (a key of the whole team acts as
	// an owner; a platform key has none).
	Role   string       `json:"role"`
	Shared []sharedJSON `json:"shared"`
}

// personJSON is a person.
type personJSON struct {
	ID    uuid.UUID `json:"id"`
	Email string    `json:"email"`
}

// keyJSON is an API key as its holder may see it (never its hash).
type keyJSON struct {
	ID     uuid.UUID `json:"id"`
	Prefix string    `json:"prefix"`
	Name   string    `json:"name"`
	// Scopes are empty for full access.
	Scopes []string `json:"scopes"`
	// Platform keys act for every team (see the README's "Platform keys").
	Platform bool `json:"platform"`
	// RateLimit is requests per minute, the server's default included.
	RateLimit int        `json:"rateLimit"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// teamJSON is a team.
type teamJSON struct {
	ID   uuid.UUID `json:"id"`
	Name string    `json:"name"`
}

// me answers with the calling key, its team, its person and role, and
// the grants addressed to the person.
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	k := c.key
	team, err := s.Queries.GetTeam(r.Context(), k.TeamID)
	if err != nil {
		return err
	}
	me := meJSON{
		Key: keyJSON{ID: k.ID, Prefix: k.Prefix, Name: k.Name, Scopes: append([]string{}, k.Scopes...), Platform: k.Platform,
			RateLimit: s.rateLimitOf(k), ExpiresAt: k.ExpiresAt},
		Team: teamJSON{ID: team.ID, Name: team.Name}, Role: c.role, Shared: []sharedJSON{},
	}
	if k.Platform {
		me.Role = ""
	}
	if c.email != "" {
		me.Person = &personJSON{ID: k.PersonID.UUID, Email: c.email}
		rows, err := s.Queries.ListGrantsTo(r.Context(), queries.ListGrantsToParams{Email: c.email})
		if err != nil {
			return err
		}
		for _, g := range rows {
			if g.Status == "pending" || g.Status == "accepted" {
				me.Shared = append(me.Shared, toSharedJSON(g))
			}
		}
	}
	ok(w, http.StatusOK, "me", me)
	return nil
}
