package apikey

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/sql/listen"
)

// Cache remembers keys by hash so that authenticating a request costs no
// database query. A trigger on api_keys sends the key's hash on the
// "api_keys" channel whenever a key changes (revoked, expiry moved,
// deleted), and Run drops the entry, so a revocation takes effect at once.
// Entries also expire after a TTL, in case a notification is ever lost.
type Cache struct {
	q   *queries.Queries
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]cached
	// gen changes with every invalidation, so that a lookup that raced one
	// does not store what it read before it.
	gen uint64
}

type cached struct {
	key queries.GetAPIKeyByHashRow
	at  time.Time
}

// maxEntries bounds the cache; past it the cache starts over.
const maxEntries = 100_000

// NewCache returns an empty cache.
func NewCache(q *queries.Queries, ttl time.Duration) *Cache {
	return &Cache{q: q, ttl: ttl, entries: map[string]cached{}}
}

// Lookup returns the key stored under hash, with its person's email and
// role, from the cache when it can. A key that does not exist is an error
// wrapping pgx.ErrNoRows.
func (c *Cache) Lookup(ctx context.Context, hash []byte) (queries.GetAPIKeyByHashRow, error) {
	c.mu.Lock()
	e, ok := c.entries[string(hash)]
	gen := c.gen
	c.mu.Unlock()
	if ok && time.Since(e.at) < c.ttl {
		return e.key, nil
	}
	key, err := c.q.GetAPIKeyByHash(ctx, hash)
	if err != nil {
		return key, err
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(c.entries) >= maxEntries {
			c.entries = map[string]cached{}
		}
		c.entries[string(hash)] = cached{key: key, at: time.Now()}
	}
	c.mu.Unlock()
	return key, nil
}

// Run keeps the cache in step with the database until ctx ends.
func (c *Cache) Run(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) {
	listen.Run(ctx, pool, "api_keys", c, log)
}

// Notify implements listen.Handler: the payload is the hex hash of a key
// that changed.
func (c *Cache) Notify(payload string) {
	hash, err := hex.DecodeString(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if err != nil {
		c.entries = map[string]cached{}
		return
	}
	delete(c.entries, string(hash))
}

// Reset implements listen.Handler: with notifications possibly missed,
// nothing cached can be trusted.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.entries = map[string]cached{}
}
