package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/queries"
)

// Checkpoint is what a job has done so far, stored in jobs.checkpoint.
type Checkpoint struct {
	// Done lists the finished steps in order.
	Done []string `json:"done,omitempty"`
	// Data holds what steps remembered (a provider task id) by "step/key",
	// for a later attempt of the same step, and what the job Set for later
	// steps (a new VM's id) by "/key".
	Data map[string]json.RawMessage `json:"data,omitempty"`
	// Committed says the job passed its point of no return (Run.CommitAt):
	// it is carried through to its end and no longer cancelled.
	Committed bool `json:"committed,omitempty"`
}

// Step is one named, resumable piece of a job. Do must be safe to run again
// after it was interrupted: look before creating, and reuse a provider task
// that was already started (see Run.Remember).
type Step struct {
	Name string
	Do   func(ctx context.Context) error
}

// Run carries a job attempt's steps and checkpoint.
type Run struct {
	q       *queries.Queries
	jobID   uuid.UUID
	attempt int32
	log     *slog.Logger

	cp       Checkpoint
	step     string
	progress int16
	result   any
	// secretResult is sealed into jobs.sealed_result when the job succeeds.
	secretResult any
	sealer       *Sealer
	// commitAt is the step from which on the job is carried through.
	commitAt string
}

// errSuperseded says that a newer attempt owns the job, or that the job
// ended meanwhile; this attempt must stop without touching anything.
var errSuperseded = errors.New("job attempt superseded")

func newRun(q *queries.Queries, row queries.Job, log *slog.Logger, sealer *Sealer) (*Run, error) {
	r := &Run{q: q, jobID: row.ID, attempt: row.Attempts, log: log, step: row.Step, progress: row.Progress, sealer: sealer}
	if len(row.Checkpoint) > 0 {
		if err := json.Unmarshal(row.Checkpoint, &r.cp); err != nil {
			return nil, fmt.Errorf("decode checkpoint: %w", err)
		}
	}
	return r, nil
}

// Steps runs the steps in order, skipping those a previous attempt finished.
// Until the job passes its point of no return (CommitAt) it returns
// ErrCancelled before a step when the job was asked to stop. A step's end,
// the next step's start and the cancellation check are one write (see
// SaveJobCheckpoint): one round trip per step.
func (r *Run) Steps(ctx context.Context, steps ...Step) error {
	var todo []int
	for i, s := range steps {
		if !slices.Contains(r.cp.Done, s.Name) {
			todo = append(todo, i)
		}
	}
	for n, i := range todo {
		s := steps[i]
		if n == 0 {
			if err := r.begin(ctx, s.Name); err != nil {
				return err
			}
		}
		r.log.Info("step started", "step", s.Name)
		if err := s.Do(ctx); err != nil {
			return fmt.Errorf("step %s: %w", s.Name, err)
		}
		r.cp.Done = append(r.cp.Done, s.Name)
		r.progress = int16((i + 1) * 100 / len(steps))
		r.log.Info("step finished", "step", s.Name, "progress", r.progress)
		if n+1 < len(todo) {
			if err := r.begin(ctx, steps[todo[n+1]].Name); err != nil {
				return err
			}
		} else if err := r.save(ctx); err != nil {
			return err
		}
	}
	return nil
}

// begin records that the step starts (with what the checkpoint holds so
// far) and returns ErrCancelled when the job was asked to stop and has not
// passed its point of no return. At the CommitAt step the point of no
// return is recorded before the step starts: from there on a stop at any
// point must not leave the service half-made.
func (r *Run) begin(ctx context.Context, step string) error {
	r.step = step
	if step == r.commitAt && !r.cp.Committed {
		if err := r.commit(ctx); err != nil {
			return err
		}
		r.log.Info("point of no return: the job is carried through to its end", "step", step)
		return nil
	}
	cancel, err := r.write(ctx)
	if err != nil {
		return err
	}
	if cancel && !r.cp.Committed {
		return ErrCancelled
	}
	return nil
}

// CommitAt names the step at whose start the job passes its point of no
// return (a reinstall's destroy): from then on cancellation requests are
// refused, an interrupted attempt resumes, and a job that fails all the same
// marks its service needs_repair.
func (r *Run) CommitAt(step string) { r.commitAt = step }

// Committed reports whether the job passed its point of no return.
func (r *Run) Committed() bool { return r.cp.Committed }

// Step returns the name of the step that runs now, or ran last.
func (r *Run) Step() string { return r.step }

// Remember stores v under key for the current step and saves it at once,
// so that a later attempt of the step can Recall it: typically the id of a
// provider task the step just started.
func (r *Run) Remember(ctx context.Context, key string, v any) error {
	return r.put(ctx, r.step+"/"+key, v)
}

// Recall loads into v what the current step remembered under key and reports
// whether there was anything.
func (r *Run) Recall(key string, v any) (bool, error) {
	return r.get(r.step+"/"+key, v)
}

// Set stores v under key for the whole job and saves it at once: what later
// steps need from an earlier one, such as the VMID a provision chose.
func (r *Run) Set(ctx context.Context, key string, v any) error {
	return r.put(ctx, "/"+key, v)
}

// Get loads into v what the job Set under key and reports whether there
// was anything.
func (r *Run) Get(key string, v any) (bool, error) {
	return r.get("/"+key, v)
}

func (r *Run) put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("remember %s: %w", key, err)
	}
	if r.cp.Data == nil {
		r.cp.Data = map[string]json.RawMessage{}
	}
	r.cp.Data[key] = b
	return r.save(ctx)
}

func (r *Run) get(key string, v any) (bool, error) {
	b, ok := r.cp.Data[key]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("recall %s: %w", key, err)
	}
	return true, nil
}

// Forget drops what the current step remembered under key, e.g. a provider
// task that failed and must not be waited on again.
func (r *Run) Forget(ctx context.Context, key string) error {
	if _, ok := r.cp.Data[r.step+"/"+key]; !ok {
		return nil
	}
	delete(r.cp.Data, r.step+"/"+key)
	return r.save(ctx)
}

// Log records a line of the job's output (an install's), which the job's
// event stream shows; it must hold no secret.
func (r *Run) Log(ctx context.Context, line string) error {
	if err := r.q.InsertJobLog(ctx, queries.InsertJobLogParams{ID: r.jobID, Message: line}); err != nil {
		return fmt.Errorf("record job log: %w", err)
	}
	return nil
}

// SetResult sets what the job reports when it succeeds.
func (r *Run) SetResult(v any) { r.result = v }

// SetSecretResult sets a secret the job hands back once it succeeds (a
// generated password): it is stored sealed, and the API shows it once.
func (r *Run) SetSecretResult(v any) { r.secretResult = v }

// SetSecret stores v sealed under key for the whole job, for what later
// steps and attempts need but the checkpoint must not hold in plaintext.
func (r *Run) SetSecret(ctx context.Context, key string, v any) error {
	sealed, err := r.sealer.Seal(r.jobID, v)
	if err != nil {
		return err
	}
	return r.Set(ctx, "secret/"+key, sealed)
}

// GetSecret opens into v what SetSecret stored under key and reports
// whether there was anything.
func (r *Run) GetSecret(key string, v any) (bool, error) {
	var sealed []byte
	ok, err := r.Get("secret/"+key, &sealed)
	if err != nil || !ok {
		return ok, err
	}
	return true, r.sealer.Open(r.jobID, sealed, v)
}

// commit records the point of no return, unless a cancellation came first:
// then the job is cancelled.
func (r *Run) commit(ctx context.Context) error {
	r.cp.Committed = true
	b, err := json.Marshal(r.cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	n, err := r.q.CommitJobCheckpoint(ctx, queries.CommitJobCheckpointParams{
		ID: r.jobID, Attempts: r.attempt, Step: r.step, Progress: r.progress, Checkpoint: b,
	})
	if err != nil {
		r.cp.Committed = false
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if n == 1 {
		return nil
	}
	r.cp.Committed = false
	if cancel, cerr := r.q.JobCancelRequested(ctx, r.jobID); cerr != nil || cancel {
		return cmpErr(cerr, ErrCancelled)
	}
	return errSuperseded
}

func (r *Run) save(ctx context.Context) error {
	_, err := r.write(ctx)
	return err
}

// write stores the checkpoint and reports whether a cancellation was asked
// for; it returns errSuperseded when the attempt may not write any more.
func (r *Run) write(ctx context.Context) (cancelRequested bool, err error) {
	b, err := json.Marshal(r.cp)
	if err != nil {
		return false, fmt.Errorf("encode checkpoint: %w", err)
	}
	cancel, err := r.q.SaveJobCheckpoint(ctx, queries.SaveJobCheckpointParams{
		ID: r.jobID, Attempts: r.attempt, Step: r.step, Progress: r.progress, Checkpoint: b,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, errSuperseded
	}
	if err != nil {
		return false, fmt.Errorf("save checkpoint: %w", err)
	}
	return cancel, nil
}
