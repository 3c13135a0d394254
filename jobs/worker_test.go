package jobs

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

func TestTaskTypesAreRoutedExactly(t *testing.T) {
	ws := NewWorkers(nil, nil, jobtest.Logger(t))
	ran := false
	AddWorker(ws, WorkFunc[BackupArgs](func(context.Context, *Job[BackupArgs]) error { ran = true; return nil }))
	err := ws.Handler().ProcessTask(context.Background(), asynq.NewTask(BackupDeleteArgs{}.Kind(), []byte(`{}`)))
	if !errors.Is(err, ErrNoWorker) || ran {
		t.Errorf("a %s task in a process with only %s's worker: %v, ran the backup worker %v; want ErrNoWorker, not run",
			BackupDeleteArgs{}.Kind(), BackupArgs{}.Kind(), err, ran)
	}
}

func TestSuspensionDecisionIsTheSameOnARetry(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		action   string
		reason   string
		recorded []string // the reasons on the service when the (retried) job runs
		want     bool
	}{
		{"suspend, first attempt", "suspend", SuspendedForPayment, nil, true},
		{"suspend retried after its reason was recorded", "suspend", SuspendedForPayment, []string{SuspendedForPayment}, true},
		{"resume, another reason left", "resume", SuspendedForPayment, []string{SuspendedForPayment, SuspendedForCancellation}, false},
		{"resume retried after its reason was removed", "resume", SuspendedForPayment, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			for _, r := range tt.recorded {
				if _, err := f.q.AddSuspension(ctx, queries.AddSuspensionParams{ID: f.svc.ID, Reason: r}); err != nil {
					t.Fatal(err)
				}
			}
			svc, err := f.q.GetService(ctx, f.svc.ID)
			if err != nil {
				t.Fatal(err)
			}
			w := &PowerWorker{Queries: f.q}
			act, err := w.decideSuspension(ctx, &Job[PowerArgs]{Service: &svc, Args: PowerArgs{Action: tt.action, Reason: tt.reason}})
			if err != nil || act != tt.want {
				t.Errorf("decideSuspension = %v, %v; want %v", act, err, tt.want)
			}
		})
	}
}
