package sim

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// login answers POST /auth/login with a fresh token. Wrong credentials get
// code 196 with HTTP 500, as the real API has been observed to answer them
// (not 401): a client must read the code, not the status, to stop retrying.
func (s *Server) login(c *call) (any, error) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
		IP       string `json:"ip"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if in.Username == "" || in.Username != s.cfg.Username || in.Password != s.cfg.Password {
		return nil, authFailed(http.StatusInternalServerError)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	token := s.randomHex(16)
	s.tokens[token] = time.Now().Add(s.cfg.TokenLifetime)
	return map[string]any{"token": token, "reseller_id": resellerID}, nil
}

// authorize checks the "Authorization: Bearer <token>" header against the
// tokens login handed out and that have not expired.
func (s *Server) authorize(r *http.Request) error {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return authFailed(http.StatusUnauthorized)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expiry, ok := s.tokens[token]
	if !ok {
		return authFailed(http.StatusUnauthorized)
	}
	if time.Now().After(expiry) {
		delete(s.tokens, token)
		return authFailed(http.StatusUnauthorized)
	}
	return nil
}

// randomHex returns n random bytes in hex; the lock must be held.
func (s *Server) randomHex(n int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%02x", s.rng.UintN(256))
	}
	return b.String()
}
