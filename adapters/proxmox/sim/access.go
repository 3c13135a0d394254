package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ticketLife is how long a PVE ticket is valid: two hours.
const ticketLife = 2 * time.Hour

func (s *Server) sign(data string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// makeTicket makes a "PVE:user@realm:HEXTIME::SIGNATURE" ticket.
func (s *Server) makeTicket(prefix, user, data string, at time.Time) string {
	plain := fmt.Sprintf("%s:%s:%08X", prefix, user, at.Unix())
	if prefix == "PVEVNC" {
		plain = fmt.Sprintf("%s:%08X", prefix, at.Unix())
	}
	return plain + "::" + s.sign(plain+"|"+user+"|"+data)
}

// checkTicket verifies a ticket made by makeTicket for data, valid from
// minAge to maxAge after it was made, and returns its user and age.
func (s *Server) checkTicket(prefix, ticket, user, data string, minAge, maxAge time.Duration) (string, bool) {
	plain, sig, ok := strings.Cut(ticket, "::")
	if !ok {
		return "", false
	}
	parts := strings.Split(plain, ":")
	if parts[0] != prefix {
		return "", false
	}
	hexTime := parts[len(parts)-1]
	if prefix != "PVEVNC" {
		if len(parts) < 3 {
			return "", false
		}
		user = strings.TrimSuffix(strings.TrimPrefix(plain, prefix+":"), ":"+hexTime)
	}
	if !hmac.Equal([]byte(sig), []byte(s.sign(plain+"|"+user+"|"+data))) {
		return "", false
	}
	t, err := strconv.ParseInt(hexTime, 16, 64)
	if err != nil {
		return "", false
	}
	age := time.Since(time.Unix(t, 0))
	if age < minAge || age > maxAge {
		return "", false
	}
	return user, true
}

func (s *Server) verifyTicket(ticket string) (string, bool) {
	return s.checkTicket("PVE", ticket, "", "", -5*time.Minute, ticketLife)
}

func (s *Server) csrfToken(user string, at time.Time) string {
	hexTime := fmt.Sprintf("%08X", at.Unix())
	return hexTime + ":" + strings.TrimRight(s.sign("csrf|"+hexTime+"|"+user), "=")
}

func (s *Server) verifyCSRF(token, user string) bool {
	hexTime, _, ok := strings.Cut(token, ":")
	if !ok {
		return false
	}
	t, err := strconv.ParseInt(hexTime, 16, 64)
	if err != nil || time.Since(time.Unix(t, 0)) > ticketLife {
		return false
	}
	return hmac.Equal([]byte(token), []byte(s.csrfToken(user, time.Unix(t, 0))))
}

// ticket is POST /access/ticket: it logs Config.User in with
// Config.Password, or renews a valid ticket given as the password, and
// answers the ticket, its CSRF prevention token and the user's
// capabilities. It needs no authentication.
func (s *Server) ticket(w http.ResponseWriter, r *http.Request) {
	idx := s.Begin(r, "ticket", "")
	status := func() int {
		f := s.Next("ticket", "")
		if !s.Wait(r.Context(), f) {
			return 0
		}
		if f.Status >= 400 {
			msg := f.Message
			if msg == "" {
				msg = http.StatusText(f.Status)
			}
			return writeError(w, &apiError{Status: f.Status, Reason: msg, RetryAfter: f.RetryAfter})
		}
		p, err := params(r)
		if err != nil {
			return writeError(w, err)
		}
		for _, k := range []string{"username", "password"} {
			if p[k] == "" {
				return writeError(w, paramError(k, "property is missing and it is not optional"))
			}
		}
		user := p["username"]
		if realm := p["realm"]; realm != "" && !strings.Contains(user, "@") {
			user += "@" + realm
		}
		ok := s.cfg.Password != "" && user == s.cfg.User && p["password"] == s.cfg.Password
		if !ok {
			if u, valid := s.verifyTicket(p["password"]); valid && u == user {
				ok = true
			}
		}
		if !ok {
			return writeError(w, &apiError{Status: http.StatusUnauthorized, Reason: "authentication failure"})
		}
		now := time.Now()
		data := map[string]any{
			"username": user, "ticket": s.makeTicket("PVE", user, "", now),
			"CSRFPreventionToken": s.csrfToken(user, now), "clustername": "sim-cluster",
			"cap": map[string]any{
				"vms":     map[string]int{"VM.Audit": 1, "VM.Console": 1, "VM.PowerMgmt": 1, "VM.Clone": 1, "VM.Allocate": 1, "VM.Backup": 1, "VM.Config.Disk": 1, "VM.Config.CPU": 1, "VM.Config.Memory": 1, "VM.Config.Network": 1, "VM.Config.Options": 1, "VM.Config.Cloudinit": 1, "VM.Config.CDROM": 1},
				"storage": map[string]int{"Datastore.Audit": 1, "Datastore.Allocate": 1, "Datastore.AllocateSpace": 1},
				"nodes":   map[string]int{"Sys.Audit": 1, "Sys.Console": 1},
				"dc":      map[string]int{"Sys.Audit": 1},
				"access":  map[string]int{"User.Modify": 1},
			},
		}
		body, _ := json.Marshal(map[string]any{"data": data})
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		return http.StatusOK
	}()
	s.Finish(idx, status)
}
