// Package apikey makes API keys and the hashes we keep of them.
//
// A key is "sk_" followed by 43 characters of base64url (32 random bytes).
// Only its SHA-256 hash is stored: the key has enough entropy that a slow
// password hash would add nothing but latency to every request. The first
// characters are kept as a prefix so that people can tell keys apart.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/queries"
)

// Prefix starts every key, as in seed 002 (`Authorization: Bearer sk_...`).
const Prefix = "sk_"

// prefixLen is how much of a key is kept in clear for display.
const prefixLen = len(Prefix) + 8

// New returns a fresh key, its display prefix and its hash.
func New() (key, prefix string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	key = Prefix + base64.RawURLEncoding.EncodeToString(b)
	return key, key[:prefixLen], Hash(key)
}

// Hash returns the value stored for key.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// WellFormed reports whether s could be a key at all, so that junk is turned
// away without a database lookup.
func WellFormed(s string) bool {
	if !strings.HasPrefix(s, Prefix) || len(s) != len(Prefix)+43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s[len(Prefix):])
	return err == nil
}

// Scopes are the permissions a key may carry (seed 002). A key without
// scopes has them all.
var Scopes = []string{
	"services.read", "services.write",
	"dns.read", "dns.write",
	"domains.read", "domains.write",
	"billing.read", "billing.write",
	"tickets.read", "tickets.write",
	"teams.read", "teams.write",
	"backups.read", "backups.write",
}

// Spec describes a key to create.
type Spec struct {
	TeamID    uuid.UUID
	Name      string
	Scopes    []string
	IPs       []netip.Prefix
	RateLimit int // requests per minute; 0 for the server's default
	ExpiresAt *time.Time
	// Platform makes a platform key: it acts for every team (see the
	// README's "Platform keys").
	Platform bool
	// PersonID, when set, is the team member the key belongs to: it acts
	// with their role. Without one a key acts for the whole team.
	PersonID uuid.UUID
}

// Create makes a key for spec, stores its hash and returns the key itself,
// which exists nowhere else afterwards.
func Create(ctx context.Context, q *queries.Queries, spec Spec) (string, queries.ApiKey, error) {
	for _, s := range spec.Scopes {
		if !slices.Contains(Scopes, s) {
			return "", queries.ApiKey{}, fmt.Errorf("unknown scope %q (known: %s)", s, strings.Join(Scopes, ", "))
		}
	}
	key, prefix, hash := New()
	row, err := q.CreateAPIKey(ctx, queries.CreateAPIKeyParams{
		TeamID: spec.TeamID, Name: spec.Name, Prefix: prefix, KeyHash: hash,
		Scopes: append([]string{}, spec.Scopes...), IpAllowlist: append([]netip.Prefix{}, spec.IPs...),
		RateLimit: int32(spec.RateLimit), ExpiresAt: spec.ExpiresAt, Platform: spec.Platform,
		PersonID: uuid.NullUUID{UUID: spec.PersonID, Valid: spec.PersonID != uuid.Nil},
	})
	if err != nil {
		return "", queries.ApiKey{}, fmt.Errorf("store api key: %w", err)
	}
	return key, row, nil
}
