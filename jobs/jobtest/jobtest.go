// Package jobtest gives tests real PostgreSQL and Redis servers, isolated per
// test: a fresh database cloned from a migrated template, and an empty Redis
// database of its own.
//
// The servers come from the environment that `make test` sets up:
// TEST_DATABASE_URL (a superuser URL to the server) and TEST_REDIS_ADDR.
// Without them a test is skipped, except when CI is set: there it fails,
// since a test that needs a server must never pass by not running.
package jobtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/hostfleet/provisiond/sql/migrations"
)

// need skips or fails the test when an environment variable is missing.
func need(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set: this test needs a real server (run it through `make test`)", name)
	}
	t.Skipf("%s is not set; run `make test` to start the servers this test needs", name)
	return ""
}

// DB returns a pool on a new database holding the current schema, and the
// database's URL (for a child process). The database is dropped when the
// test ends.
func DB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	admin := need(t, "TEST_DATABASE_URL")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	defer conn.Close(ctx)
	tmpl, err := template(ctx, conn, admin)
	if err != nil {
		t.Fatalf("prepare template database: %v", err)
	}
	name := "t_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if err := createFrom(ctx, conn, name, tmpl); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	dbURL := withDatabase(t, admin, name)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("drop test database: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	return pool, dbURL
}

// template makes sure a database migrated to the current schema exists to
// clone from. Its name carries a hash of the migrations, so a changed schema
// gets a new template. Test processes running in parallel take turns through
// an advisory lock.
func template(ctx context.Context, conn *pgx.Conn, admin string) (string, error) {
	sum, err := schemaHash()
	if err != nil {
		return "", err
	}
	name := "tmpl_" + sum
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(7071)"); err != nil {
		return "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7071)") //nolint:errcheck
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_new"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + building
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		return "", err
	}
	err = migrations.Up(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pool.Close()
	if err != nil {
		return "", err
	}
	// Renamed only once complete, so a crash never leaves a half-made template.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	return name, nil
}

func createFrom(ctx context.Context, conn *pgx.Conn, name, tmpl string) error {
	var err error
	for range 20 {
		// Fails while another session is still connected to the template.
		if _, err = conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl); err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "being accessed by other users") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func schemaHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.Files, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

func withDatabase(t testing.TB, admin, name string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// redisDatabases is how many databases the test Redis has (its `databases`
// setting); database 0 holds only the allocation counter.
const redisDatabases = 256

// Redis returns the connection options of an empty Redis database for this
// test alone, flushed again when the test ends.
func Redis(t testing.TB) asynq.RedisClientOpt {
	t.Helper()
	addr := need(t, "TEST_REDIS_ADDR")
	ctx := context.Background()
	counter := redis.NewClient(&redis.Options{Addr: addr})
	defer counter.Close()
	n, err := counter.Incr(ctx, "jobtest:next-db").Result()
	if err != nil {
		t.Fatalf("connect to test redis at %s: %v", addr, err)
	}
	opt := asynq.RedisClientOpt{Addr: addr, DB: 1 + int(n-1)%(redisDatabases-1)}
	flush := func() error {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: opt.DB})
		defer c.Close()
		return c.FlushDB(ctx).Err()
	}
	if err := flush(); err != nil {
		t.Fatalf("flush test redis db %d: %v", opt.DB, err)
	}
	t.Cleanup(func() {
		if err := flush(); err != nil {
			t.Logf("flush test redis db %d: %v", opt.DB, err)
		}
	})
	return opt
}

// RedisClient returns a go-redis client for opt, closed when the test ends.
func RedisClient(t testing.TB, opt asynq.RedisClientOpt) *redis.Client {
	c := opt.MakeRedisClient().(*redis.Client)
	t.Cleanup(func() { c.Close() })
	return c
}

// Logger returns a logger that writes to the test's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Eventually polls cond every 20 ms until it returns true or the timeout
// passes, and fails the test with msg then.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
