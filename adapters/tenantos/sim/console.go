package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// consoleSession is a NoVNC session URL handed out by console/start.
type consoleSession struct {
	serverID int
	ip       netip.Addr
	expires  time.Time
}

// startConsole answers GET .../console/start: a NoVNC session that only
// authorizedIp may open, the caller's own address when none is given.
// Parameters come from the JSON body or the query string.
func (s *Server) startConsole(q *request) (any, error) {
	v := newValidator(q.in)
	ip := s.clientIP(q.r)
	if raw, ok := v.str("authorizedIp", 64); ok {
		ip = raw
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		v.fail("authorizedIp", "The :attribute field must be a valid IP address.")
	}
	v.oneOf("consoleMode", "standard", "web")
	if err := v.err(); err != nil {
		return nil, err
	}
	for token, c := range s.consoles {
		if !c.expires.After(q.now) {
			delete(s.consoles, token)
		}
	}
	b := make([]byte, 20)
	rand.Read(b)
	token := hex.EncodeToString(b)
	s.consoles[token] = &consoleSession{serverID: q.m.ID, ip: addr.Unmap(), expires: q.now.Add(s.cfg.ConsoleTTL)}
	base := s.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if q.r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + q.r.Host
	}
	return map[string]any{"token": token, "accessUrl": strings.TrimSuffix(base, "/") + "/console/" + token}, nil
}

// openConsole serves a session URL: the NoVNC page for the authorized IP
// until the session expires, 403 from anywhere else, 404 once gone. It is
// logged as op "console.session" and takes faults like the API.
func (s *Server) openConsole(w http.ResponseWriter, r *http.Request) {
	idx := s.Begin(r, "console.session", "")
	s.Finish(idx, s.serveConsole(w, r, idx))
}

func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request, idx int) int {
	text := func(status int, msg string) int {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, msg)
		return status
	}
	s.mu.Lock()
	c, ok := s.consoles[r.PathValue("token")]
	var name string
	if ok {
		if m := s.machines[c.serverID]; m != nil {
			name = m.ServerName
		}
	}
	s.mu.Unlock()
	target := ""
	if ok {
		target = strconv.Itoa(c.serverID)
		s.SetTarget(idx, target)
	}
	f := s.Next("console.session", target)
	if !s.Wait(r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", simkit.RetryAfterSeconds(f.RetryAfter))
		}
		msg := f.Message
		if msg == "" {
			msg = defaultMessage(f.Status)
		}
		return text(f.Status, msg)
	}
	if !ok || !c.expires.After(time.Now()) {
		return text(http.StatusNotFound, "This console session does not exist or has expired.")
	}
	if ip, err := netip.ParseAddr(s.clientIP(r)); err != nil || ip.Unmap() != c.ip {
		return text(http.StatusForbidden, "This console session is bound to another IP address.")
	}
	page := []byte(fmt.Sprintf("<!DOCTYPE html>\n<html><head><title>noVNC - %s</title></head><body><div id=\"noVNC_container\" data-server=\"%d\"></div></body></html>\n",
		html.EscapeString(name), c.serverID))
	hdr := http.Header{"Content-Type": {"text/html; charset=utf-8"}}
	if f.Drop {
		simkit.DropMidResponse(w, hdr, page)
		return http.StatusOK
	}
	w.Header()["Content-Type"] = hdr["Content-Type"]
	w.WriteHeader(http.StatusOK)
	w.Write(page)
	return http.StatusOK
}
