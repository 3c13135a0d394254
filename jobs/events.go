package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EventHub tells waiting readers that a job has new events. One connection
// LISTENs on the job_events channel (fed by a trigger on job_events) for the
// whole process, however many readers wait.
type EventHub struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu   sync.Mutex
	subs map[uuid.UUID]map[chan struct{}]struct{}
}

// NewEventHub returns a hub; Run must be running for it to deliver.
func NewEventHub(pool *pgxpool.Pool, log *slog.Logger) *EventHub {
	return &EventHub{pool: pool, log: log, subs: map[uuid.UUID]map[chan struct{}]struct{}{}}
}

// Subscribe returns a channel that receives a value whenever the job may
// have new events, and a function to stop. The channel holds at most one
// pending wake-up: readers re-read all events after their last one anyway.
func (h *EventHub) Subscribe(job uuid.UUID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[job] == nil {
		h.subs[job] = map[chan struct{}]struct{}{}
	}
	h.subs[job][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[job], ch)
		if len(h.subs[job]) == 0 {
			delete(h.subs, job)
		}
		h.mu.Unlock()
	}
}

// wake signals the readers of one job, or of every job when job is uuid.Nil.
func (h *EventHub) wake(job uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if job != uuid.Nil {
		signal(h.subs[job])
		return
	}
	for _, set := range h.subs {
		signal(set)
	}
}

func signal(set map[chan struct{}]struct{}) {
	for ch := range set {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run listens until ctx ends. When the connection breaks it wakes every
// reader, since notifications may have been missed, and listens again.
func (h *EventHub) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		h.wake(uuid.Nil)
		h.log.Warn("job event listener lost its connection; listening again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (h *EventHub) listen(ctx context.Context) error {
	pooled, err := h.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection that has LISTENed must not go back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN job_events"); err != nil {
		return err
	}
	// Anything that happened while no one listened must be re-read.
	h.wake(uuid.Nil)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if id, err := uuid.Parse(n.Payload); err == nil {
			h.wake(id)
		}
	}
}
