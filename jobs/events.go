package jobs

import (
	"context"
	"log/slog"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hostfleet/provisiond/sql/listen"
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

// Run delivers notifications until ctx ends.
func (h *EventHub) Run(ctx context.Context) {
	listen.Run(ctx, h.pool, "job_events", h, h.log)
}

// Notify implements listen.Handler: the payload is a job id.
func (h *EventHub) Notify(payload string) {
	if id, err := uuid.Parse(payload); err == nil {
		h.wake(id)
	}
}

// Reset implements listen.Handler: every reader re-reads, since
// notifications may have been missed.
func (h *EventHub) Reset() { h.wake(uuid.Nil) }
