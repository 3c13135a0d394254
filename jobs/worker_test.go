package jobs

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/jobs/jobtest"
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
