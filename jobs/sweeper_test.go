package jobs

import (
	"context"
	"encoding/json"
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

func TestSweeperRecordsTheJobsOfACancellationTheAPIDidNot(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// prepare leaves the service's cancellation in some state.
		prepare func(t *testing.T, f *fixture)
		// want is the cancellation power job the sweep records, "" for none.
		want string
	}{
		{"immediate cancellation without its suspension", func(t *testing.T, f *fixture) { f.cancel(t, "immediately") }, "suspend"},
		{"cancellation at the period's end suspends nothing", func(t *testing.T, f *fixture) { f.cancel(t, "end_of_billing_period") }, ""},
		{"immediate cancellation suspended already", func(t *testing.T, f *fixture) {
			f.cancel(t, "immediately")
			f.suspendFor(t, SuspendedForCancellation)
		}, ""},
		{"withdrawn cancellation still suspending the service", func(t *testing.T, f *fixture) {
			f.cancel(t, "immediately")
			f.suspendFor(t, SuspendedForCancellation)
			if _, err := f.q.ClearCancellation(ctx, f.svc.ID); err != nil {
				t.Fatal(err)
			}
		}, "resume"},
		{"suspension for payment only", func(t *testing.T, f *fixture) { f.suspendFor(t, SuspendedForPayment) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			in := asynq.NewInspector(f.redis)
			defer in.Close()
			tt.prepare(t, f)
			s := &Sweeper{Queries: f.q, Inspector: in, Client: f.client, Grace: -time.Second, Log: jobtest.Logger(t)}
			var counts []int
			for range 2 { // the second sweep finds the job the first recorded
				res, err := s.Sweep(ctx)
				if err != nil {
					t.Fatalf("Sweep: %v", err)
				}
				counts = append(counts, res.Suspensions)
			}
			svc, err := f.q.GetService(ctx, f.svc.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, action := range []string{"suspend", "resume"} {
				job, err := f.q.GetJob(ctx, CancellationPowerJobID(svc.ID, svc.CancellationGeneration, action))
				var args PowerArgs
				if recorded := err == nil; recorded != (action == tt.want) {
					t.Errorf("%s job recorded: %v, want %v", action, recorded, action == tt.want)
				} else if recorded && (json.Unmarshal(job.Args, &args) != nil || args.Action != action || !args.WaitForService || job.Mutating) {
					t.Errorf("%s job %s %s, want a power job that waits for the service", action, job.Kind, job.Args)
				}
			}
			if want := map[bool]int{true: 1}[tt.want != ""]; counts[0] != want || counts[1] != 0 {
				t.Errorf("sweeps recorded %v jobs, want %d then 0", counts, want)
			}
		})
	}
}

// cancel records a cancellation of the fixture's service as the API does,
// without the jobs the API records after it.
func (f *fixture) cancel(t *testing.T, when string) {
	t.Helper()
	at := time.Now().Add(time.Hour)
	if _, err := f.q.SetBillingPeriodEnd(context.Background(), queries.SetBillingPeriodEndParams{ID: f.svc.ID, BillingPeriodEnd: &at}); err != nil {
		t.Fatal(err)
	}
	_, err := f.q.ScheduleTermination(context.Background(), queries.ScheduleTerminationParams{ID: f.svc.ID, CancelWhen: &when,
		TerminateAt: &at, JobID: nullUUID(TerminationJobID(f.svc.ID, 1))})
	if err != nil {
		t.Fatal(err)
	}
}

// suspendFor records a suspension reason on the fixture's service.
func (f *fixture) suspendFor(t *testing.T, reason string) {
	t.Helper()
	if _, err := f.q.AddSuspension(context.Background(), queries.AddSuspensionParams{ID: f.svc.ID, Reason: reason}); err != nil {
		t.Fatal(err)
	}
}
