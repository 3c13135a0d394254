package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

func TestSweeper(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// prepare leaves a job in some state and returns it.
		prepare    func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job
		wantStatus string
		wantError  string
		wantTask   bool
		// wantAttemptsLeft, when set, is how many attempts the task put
		// back carries (asynq's MaxRetry + 1).
		wantAttemptsLeft func(job queries.Job) int
	}{
		{
			name: "queued job without a task is enqueued again",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				job := f.insert(t)
				if err := in.DeleteTask(job.Queue, job.ID.String()); err != nil {
					t.Fatal(err)
				}
				return job
			},
			wantStatus: StatusQueued, wantTask: true,
		},
		{
			name: "running job whose task is gone resumes",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				job := f.insert(t)
				f.q.StartJobAttempt(ctx, job.ID)
				in.DeleteTask(job.Queue, job.ID.String())
				return job
			},
			wantStatus: StatusRunning, wantTask: true,
			// The attempt the lost task cut short is not held against it.
			wantAttemptsLeft: func(job queries.Job) int { return int(job.MaxAttempts) },
		},
		{
			name: "job waiting for its retry whose task is gone resumes",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				job := f.insert(t)
				started, _ := f.q.StartJobAttempt(ctx, job.ID)
				f.q.RetryJobAttempt(ctx, queries.RetryJobAttemptParams{ID: job.ID, Attempts: started.Attempts, Error: "503"})
				in.DeleteTask(job.Queue, job.ID.String())
				return job
			},
			wantStatus: StatusRetrying, wantTask: true,
			wantAttemptsLeft: func(job queries.Job) int { return int(job.MaxAttempts) - 1 },
		},
		{
			name: "running job past its point of no return whose task is gone resumes",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				job := f.insert(t)
				started, _ := f.q.StartJobAttempt(ctx, job.ID)
				if _, err := f.q.SaveJobCheckpoint(ctx, queries.SaveJobCheckpointParams{ID: job.ID, Attempts: started.Attempts,
					Step: "destroy", Checkpoint: []byte(`{"done":["inspect","stop"],"committed":true}`)}); err != nil {
					t.Fatal(err)
				}
				in.DeleteTask(job.Queue, job.ID.String())
				return job
			},
			wantStatus: StatusRunning, wantTask: true,
		},
		{
			name: "job whose task was archived fails",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				job := f.insert(t)
				f.q.StartJobAttempt(ctx, job.ID)
				if err := in.ArchiveTask(job.Queue, job.ID.String()); err != nil {
					t.Fatal(err)
				}
				return job
			},
			// The archived task stays for operators to look at.
			wantStatus: StatusFailed, wantError: "the job's task was archived", wantTask: true,
		},
		{
			name: "job whose task was archived after its workers died resumes",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				job := f.insert(t)
				f.q.StartJobAttempt(ctx, job.ID)
				archiveAsLeaseExpired(t, f, in, job)
				return job
			},
			// Our infrastructure failed, not the provider: not a failure.
			wantStatus: StatusRunning, wantTask: true,
		},
		{
			name: "queued job with its task is left alone",
			prepare: func(t *testing.T, f *fixture, in *asynq.Inspector) queries.Job {
				return f.insert(t)
			},
			wantStatus: StatusQueued, wantTask: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			in := asynq.NewInspector(f.redis)
			defer in.Close()
			job := tt.prepare(t, f, in)
			s := &Sweeper{Queries: f.q, Inspector: in, Client: f.client, Grace: -time.Second, Log: jobtest.Logger(t)}
			if _, err := s.Sweep(ctx); err != nil {
				t.Fatalf("Sweep: %v", err)
			}
			row, err := f.q.GetJob(ctx, job.ID)
			if err != nil {
				t.Fatal(err)
			}
			if row.Status != tt.wantStatus || !strings.HasPrefix(row.Error, tt.wantError) {
				t.Fatalf("job is %s (%q), want %s (%q)", row.Status, row.Error, tt.wantStatus, tt.wantError)
			}
			info, err := in.GetTaskInfo(job.Queue, job.ID.String())
			if hasTask := err == nil; hasTask != tt.wantTask {
				t.Fatalf("task exists: %v, want %v", hasTask, tt.wantTask)
			}
			if tt.wantAttemptsLeft != nil && info.MaxRetry+1 != tt.wantAttemptsLeft(row) {
				t.Errorf("the task put back has %d attempts, want %d", info.MaxRetry+1, tt.wantAttemptsLeft(row))
			}
		})
	}
}

// archiveAsLeaseExpired leaves the job's task archived as asynq archives
// a task whose lease expired on its last retry: a delivery that ended with
// asynq.ErrLeaseExpired and no retry left.
func archiveAsLeaseExpired(t *testing.T, f *fixture, in *asynq.Inspector, job queries.Job) {
	t.Helper()
	if err := in.DeleteTask(job.Queue, job.ID.String()); err != nil {
		t.Fatal(err)
	}
	c := asynq.NewClient(f.redis)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask(job.Kind, job.Args), asynq.TaskID(job.ID.String()), asynq.Queue(job.Queue), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(f.redis, asynq.Config{Queues: map[string]int{job.Queue: 1}, Concurrency: 1, LogLevel: asynq.FatalLevel})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return asynq.ErrLeaseExpired })); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	jobtest.Eventually(t, 10*time.Second, "the task archived", func() bool {
		info, err := in.GetTaskInfo(job.Queue, job.ID.String())
		return err == nil && info.State == asynq.TaskStateArchived && info.LastErr == asynq.ErrLeaseExpired.Error()
	})
}

func TestSweeperWaitsForTheGracePeriod(t *testing.T) {
	f := newFixture(t)
	in := asynq.NewInspector(f.redis)
	defer in.Close()
	job := f.insert(t)
	in.DeleteTask(job.Queue, job.ID.String())
	s := &Sweeper{Queries: f.q, Inspector: in, Client: f.client, Grace: time.Hour, Log: jobtest.Logger(t)}
	res, err := s.Sweep(context.Background())
	if err != nil || res.Checked != 0 {
		t.Fatalf("Sweep = %+v, %v; want nothing checked within the grace period", res, err)
	}
}

// TestSweeperRecordsTheTerminationOfACancellationWithoutOne: a
// cancellation recorded before cancellations and their jobs were one
// transaction may lack its job; the sweep records it, once, and goes on
// with the other terminations.
func TestSweeperRecordsTheTerminationOfACancellationWithoutOne(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	in := asynq.NewInspector(f.redis)
	defer in.Close()
	at, when := time.Now().Add(time.Hour), "immediately"
	id := TerminationJobID(f.svc.ID, 1)
	if _, err := f.q.ScheduleTermination(ctx, queries.ScheduleTerminationParams{ID: f.svc.ID, CancelWhen: &when,
		TerminateAt: &at, JobID: nullUUID(id)}); err != nil {
		t.Fatal(err)
	}
	s := &Sweeper{Queries: f.q, Inspector: in, Client: f.client, Grace: time.Hour, Log: jobtest.Logger(t)}
	var counts []int
	for range 2 {
		res, err := s.Sweep(ctx)
		if err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		counts = append(counts, res.Terminations)
	}
	job, err := f.q.GetJob(ctx, id)
	if err != nil || job.Status != StatusScheduled || job.Kind != (TerminationArgs{}).Kind() {
		t.Fatalf("termination job %+v, %v; want it recorded, scheduled", job, err)
	}
	if counts[0] != 1 || counts[1] != 0 {
		t.Errorf("sweeps recorded %v terminations, want 1 then 0", counts)
	}
}
