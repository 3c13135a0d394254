package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hostfleet/provisiond/queries"
)

// LeaseTTL is how long a lease outlives the last sign of its holder: a
// holder renews it every LeaseTTL/3 while its attempt runs, so a lease
// lapses within LeaseTTL of its holder ending however it ends (a killed
// worker included); one whose holding job has ended is free at once.
const LeaseTTL = time.Minute

// lease is a job attempt's hold on a shared resource that one job at a time
// may use (a Proxmox node's backup slot).
type lease struct {
	q        *queries.Queries
	resource string
	holder   uuid.UUID
	log      *slog.Logger
	poll     time.Duration

	mu   sync.Mutex
	stop func() // ends the renewal; nil while not held
}

func newLease(q *queries.Queries, resource string, holder uuid.UUID, poll time.Duration, log *slog.Logger) *lease {
	return &lease{q: q, resource: resource, holder: holder, poll: poll, log: log.With("lease", resource)}
}

// hold waits until the job holds the lease and keeps it renewed until
// release. Waiting happens here rather than as retries, so that a long
// queue on one resource does not use up the jobs' attempts. Holding it
// already is no wait.
func (l *lease) hold(ctx context.Context) error {
	l.mu.Lock()
	held := l.stop != nil
	l.mu.Unlock()
	if held {
		return nil
	}
	waited := false
	err := poll(ctx, l.poll, func(ctx context.Context) (bool, error) {
		ok, err := l.take(ctx)
		if err == nil && !ok && !waited {
			waited = true
			l.log.Info("waiting for the resource's holder to finish")
		}
		return ok, err
	})
	if err != nil {
		return err
	}
	stop := every(ctx, LeaseTTL/3, l.renew)
	l.mu.Lock()
	l.stop = stop
	l.mu.Unlock()
	return nil
}

// take takes or renews the lease and reports whether the job holds it.
func (l *lease) take(ctx context.Context) (bool, error) {
	_, err := l.q.AcquireLease(ctx, queries.AcquireLeaseParams{Resource: l.resource, Holder: l.holder,
		Ttl: pgtype.Interval{Microseconds: LeaseTTL.Microseconds(), Valid: true}})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take lease %s: %w", l.resource, err)
	}
	return true, nil
}

// renew extends the lease (every LeaseTTL/3 while it is held).
func (l *lease) renew(ctx context.Context) {
	if ok, err := l.take(ctx); err != nil && ctx.Err() == nil {
		l.log.Warn("could not renew the lease", "err", err)
	} else if err == nil && !ok {
		l.log.Warn("the lease lapsed and another job holds it")
	}
}

// release ends the renewal and gives the lease up. It is called when the
// attempt ends, however it ends: a retry takes the lease again.
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	stop := l.stop
	l.stop = nil
	l.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	if err := l.q.ReleaseLease(context.WithoutCancel(ctx), queries.ReleaseLeaseParams{Resource: l.resource, Holder: l.holder}); err != nil {
		l.log.Warn("could not release the lease; it lapses by itself", "err", err)
	}
}
