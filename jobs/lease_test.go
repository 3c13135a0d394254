package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

func TestLeaseIsFreeOnceItsHolderIsNotRunning(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// holder leaves the holding job in some state.
		holder   func(t *testing.T, f *fixture, job queries.Job)
		wantFree bool
	}{
		{"holder running", func(t *testing.T, f *fixture, job queries.Job) { f.q.StartJobAttempt(ctx, job.ID) }, false},
		{"holder ended", func(t *testing.T, f *fixture, job queries.Job) {
			started, _ := f.q.StartJobAttempt(ctx, job.ID)
			f.q.FinishJobAttempt(ctx, queries.FinishJobAttemptParams{ID: job.ID, Attempts: started.Attempts, Status: StatusFailed, Error: "x"})
		}, true},
		{"holder waiting for its retry", func(t *testing.T, f *fixture, job queries.Job) {
			started, _ := f.q.StartJobAttempt(ctx, job.ID)
			f.q.RetryJobAttempt(ctx, queries.RetryJobAttemptParams{ID: job.ID, Attempts: started.Attempts, Error: "x"})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			job := f.insert(t)
			held := newLease(f.q, "backup:pve1", job.ID, 10*time.Millisecond, jobtest.Logger(t))
			if ok, err := held.take(ctx); err != nil || !ok {
				t.Fatalf("first take: %v, %v", ok, err)
			}
			tt.holder(t, f, job)
			other := newLease(f.q, "backup:pve1", uuid.New(), 10*time.Millisecond, jobtest.Logger(t))
			if ok, err := other.take(ctx); err != nil || ok != tt.wantFree {
				t.Errorf("another job's take = %v, %v; want %v", ok, err, tt.wantFree)
			}
		})
	}
}

func TestLeaseHeldLapsesWithinItsTTLAndGoesOnRelease(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	job := f.insert(t)
	f.q.StartJobAttempt(ctx, job.ID)
	l := newLease(f.q, "backup:pve1", job.ID, 10*time.Millisecond, jobtest.Logger(t))
	if err := l.hold(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := f.q.LeaseHolder(ctx, "backup:pve1")
	if err != nil || before.Holder != job.ID {
		t.Fatalf("holder %v (%v), want the job", before.Holder, err)
	}
	if time.Until(before.ExpiresAt) > LeaseTTL+time.Second {
		t.Errorf("lease expires in %s, want at most %s", time.Until(before.ExpiresAt), LeaseTTL)
	}
	l.release(ctx)
	if _, err := f.q.LeaseHolder(ctx, "backup:pve1"); err == nil {
		t.Error("the lease outlived its release")
	}
}
