package sim

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Wings' JWT errors, with its messages.
var (
	errNoJWT        = errors.New("jwt: no jwt present")
	errNoConnect    = errors.New("jwt: missing connect permission")
	errUUIDMismatch = errors.New("jwt: server uuid mismatch")
	errDenylisted   = errors.New("jwt: created too far in past (denylist)")
	errExpired      = errors.New("jwt: exp claim is invalid")
)

// wsClaims are the claims of the panel's websocket token
// (NodeJWTService with setUser and the server's permissions).
type wsClaims struct {
	jwt.RegisteredClaims
	ServerUUID  string   `json:"server_uuid"`
	Permissions []string `json:"permissions"`
	UserUUID    string   `json:"user_uuid"`
	UserID      int      `json:"user_id"`
	UniqueID    string   `json:"unique_id"`
}

// downloadClaims are the claims of a backup download token.
type downloadClaims struct {
	jwt.RegisteredClaims
	ServerUUID string `json:"server_uuid"`
	BackupUUID string `json:"backup_uuid"`
	UserUUID   string `json:"user_uuid"`
	UniqueID   string `json:"unique_id"`
}

// randomID is Laravel's Str::random(16).
func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// nodeAddress is the node's connection address, the tokens' audience;
// here every node is the simulator itself.
func (s *Server) nodeAddress(r *http.Request) string { return baseURL(r, s.cfg.BaseURL) }

// sign signs claims as the panel does for a node: HS256 with the node's
// secret, the jti repeated in the header.
func (s *Server) sign(node *Node, claims jwt.Claims, jti string) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["jti"] = jti
	signed, err := t.SignedString([]byte(node.Secret))
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return signed, nil
}

// registered are the standard claims the panel sets: issued now, valid
// from five minutes ago, identified by md5(user id . server uuid).
func (s *Server) registered(r *http.Request, now time.Time, life time.Duration, user *User, gs *serverState) jwt.RegisteredClaims {
	sum := md5.Sum(fmt.Appendf(nil, "%d%s", user.ID, gs.UUID))
	return jwt.RegisteredClaims{
		Issuer:    s.panelURL(r),
		Audience:  jwt.ClaimStrings{s.nodeAddress(r)},
		ID:        hex.EncodeToString(sum[:]),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(life)),
	}
}

// panelURL is the panel's address: configured, or the simulator's own.
func (s *Server) panelURL(r *http.Request) string {
	if s.cfg.PanelURL != "" {
		return strings.TrimSuffix(s.cfg.PanelURL, "/")
	}
	return baseURL(r, s.cfg.BaseURL)
}

// websocketToken issues the JWT of GET /websocket; the lock must be held.
func (s *Server) websocketToken(r *http.Request, gs *serverState, user *User) (string, error) {
	now := s.now()
	claims := wsClaims{
		RegisteredClaims: s.registered(r, now, s.cfg.TokenLifetime, user, gs),
		ServerUUID:       gs.UUID, Permissions: permissions(gs, user),
		UserUUID: user.UUID, UserID: user.ID, UniqueID: randomID(),
	}
	return s.sign(s.nodes[gs.NodeID], claims, claims.ID)
}

// downloadToken issues the JWT of a backup download URL; the lock must be
// held.
func (s *Server) downloadToken(r *http.Request, gs *serverState, user *User, b *backupState) (string, error) {
	now := s.now()
	claims := downloadClaims{
		RegisteredClaims: s.registered(r, now, s.cfg.DownloadLifetime, user, gs),
		ServerUUID:       gs.UUID, BackupUUID: b.UUID, UserUUID: user.UUID, UniqueID: randomID(),
	}
	return s.sign(s.nodes[gs.NodeID], claims, claims.ID)
}

// verify checks a token's HS256 signature with the secret of the node of
// the server it names, as Wings checks with its own; the lock must not be
// held.
func (s *Server) verify(token string, claims jwt.Claims, serverUUID func() string) error {
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, gs := range s.servers {
			if gs.UUID == serverUUID() {
				return []byte(s.nodes[gs.NodeID].Secret), nil
			}
		}
		return []byte(s.cfg.NodeSecret), nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation())
	return err
}

// parseWebsocketToken checks a websocket JWT as Wings' NewTokenPayload
// does: signature, expiry, the boot-time denylist and the connect
// permission. It does not check the server; TokenValid does that later.
func (s *Server) parseWebsocketToken(token string) (*wsClaims, error) {
	claims := &wsClaims{}
	if err := s.verify(token, claims, func() string { return claims.ServerUUID }); err != nil {
		return nil, err
	}
	if err := s.checkExpiry(claims.ExpiresAt); err != nil {
		return nil, err
	}
	if claims.IssuedAt == nil || claims.IssuedAt.Before(s.bootTime) {
		return nil, errDenylisted
	}
	if !hasPermission(claims.Permissions, "websocket.connect") {
		return nil, errNoConnect
	}
	return claims, nil
}

// parseDownloadToken checks a download JWT's signature and expiry.
func (s *Server) parseDownloadToken(token string) (*downloadClaims, error) {
	claims := &downloadClaims{}
	if err := s.verify(token, claims, func() string { return claims.ServerUUID }); err != nil {
		return nil, err
	}
	if err := s.checkExpiry(claims.ExpiresAt); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkExpiry is Wings' only time check: exp, when present, is not past.
func (s *Server) checkExpiry(exp *jwt.NumericDate) error {
	if exp != nil && s.now().After(exp.Time) {
		return errExpired
	}
	return nil
}

// hasPermission is Wings' test: the permission itself, or "*" for every
// permission but the admin ones.
func hasPermission(perms []string, p string) bool {
	return slices.Contains(perms, p) || (!strings.HasPrefix(p, "admin") && slices.Contains(perms, "*"))
}
