// Package listen delivers PostgreSQL notifications (LISTEN/NOTIFY) to a
// callback over one dedicated connection, listening again after the
// connection breaks.
package listen

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/internal/backoff"
)

// Handler receives the notifications of one channel.
type Handler interface {
	// Notify is called with each notification's payload.
	Notify(payload string)
	// Reset is called whenever notifications may have been missed: after
	// (re)connecting and after the connection broke.
	Reset()
}

// Run listens on channel until ctx ends.
func Run(ctx context.Context, pool *pgxpool.Pool, channel string, h Handler, log *slog.Logger) {
	wait := backoff.Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second}
	failures := 0
	for ctx.Err() == nil {
		start := time.Now()
		err := listen(ctx, pool, channel, h)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			failures = 0 // it listened a while: this is a new outage
		}
		h.Reset()
		d := wait.Equal(failures)
		failures++
		log.Warn("listener lost its connection; listening again", "channel", channel, "err", err, "in", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func listen(ctx context.Context, pool *pgxpool.Pool, channel string, h Handler) error {
	pooled, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection that has LISTENed must not go back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	h.Reset()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		h.Notify(n.Payload)
	}
}
