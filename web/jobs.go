package web

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// jobJSON is a job as the API shows it.
type jobJSON struct {
	ID              uuid.UUID       `json:"id"`
	Kind            string          `json:"kind"`
	ServiceID       *uuid.UUID      `json:"serviceId"`
	Status          string          `json:"status"`
	Step            string          `json:"step"`
	Progress        int16           `json:"progress"`
	Attempts        int32           `json:"attempts"`
	MaxAttempts     int32           `json:"maxAttempts"`
	Error           string          `json:"error,omitempty"`
	Args            json.RawMessage `json:"args"`
	Result          json.RawMessage `json:"result,omitempty"`
	RequestedBy     string          `json:"requestedBy"`
	CancelRequested bool            `json:"cancelRequested"`
	CreatedAt       time.Time       `json:"createdAt"`
	StartedAt       *time.Time      `json:"startedAt"`
	FinishedAt      *time.Time      `json:"finishedAt"`
	UpdatedAt       time.Time       `json:"updatedAt"`
	// Secrets is what the job handed back to be shown once (a rescue
	// password); later reads leave it out.
	Secrets any `json:"secrets,omitempty"`
}

func toJobJSON(j queries.Job) jobJSON {
	out := jobJSON{
		ID: j.ID, Kind: j.Kind, Status: j.Status, Step: j.Step, Progress: j.Progress,
		Attempts: j.Attempts, MaxAttempts: j.MaxAttempts, Error: j.Error, Args: j.Args, Result: j.Result,
		RequestedBy: j.RequestedBy, CancelRequested: j.CancelRequestedAt != nil,
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, UpdatedAt: j.UpdatedAt,
	}
	if j.ServiceID.Valid {
		out.ServiceID = &j.ServiceID.UUID
	}
	return out
}

// requestHash fingerprints a job-creating request for idempotency checks.
func requestHash(method, path string, canonical []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", method, path)
	h.Write(canonical)
	return h.Sum(nil)
}

var jobStatuses = []string{
	jobs.StatusQueued, jobs.StatusScheduled, jobs.StatusRunning, jobs.StatusRetrying,
	jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCancelled,
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	p, errs := readPagination(r)
	q := r.URL.Query()
	team, terr, err := callerOf(r).listTeam(r)
	if err != nil {
		return err
	}
	if terr != "" {
		errs = append(errs, terr)
	}
	params := queries.ListTeamJobsParams{TeamID: team}
	if v := q.Get("service"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			errs = append(errs, "service must be a service id")
		}
		params.ServiceID = uuid.NullUUID{UUID: id, Valid: true}
	}
	if v := q.Get("status"); v != "" {
		if !slices.Contains(jobStatuses, v) {
			errs = append(errs, oneOf("status", jobStatuses))
		}
		params.Status = &v
	}
	if v := q.Get("kind"); v != "" {
		if len(v) > 100 {
			errs = append(errs, "kind must be at most 100 characters")
		}
		params.Kind = &v
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	total, err := s.Queries.CountTeamJobs(r.Context(), queries.CountTeamJobsParams{
		TeamID: params.TeamID, ServiceID: params.ServiceID, Status: params.Status, Kind: params.Kind,
	})
	if err != nil {
		return err
	}
	params.Limit, params.Offset = int32(p.Limit), p.offset()
	rows, err := s.Queries.ListTeamJobs(r.Context(), params)
	if err != nil {
		return err
	}
	out := make([]jobJSON, len(rows))
	for i, row := range rows {
		out[i] = toJobJSON(row)
	}
	p.setTotal(total)
	ok(w, http.StatusOK, "jobs", out, "pagination", p)
	return nil
}

// teamJob loads the {id} job if it belongs to the caller's team.
func (s *Server) teamJob(r *http.Request) (queries.Job, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return queries.Job{}, notFound("Job")
	}
	job, err := s.Queries.GetJob(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		return queries.Job{}, notFound("Job")
	}
	if err != nil {
		return job, err
	}
	if !job.ServiceID.Valid {
		if teamAccess(callerOf(r), job.TeamID, permTeam) != nil {
			return queries.Job{}, notFound("Job")
		}
		return job, nil
	}
	svc, err := s.Queries.GetService(r.Context(), job.ServiceID.UUID)
	if err != nil {
		return job, fmt.Errorf("load the job's service: %w", err)
	}
	// Seeing a job needs view on its service; cancelling it what changing
	// the service needs (delete, for a termination).
	perm := "view"
	if r.Method == http.MethodPost {
		perm = "settings"
		if job.Kind == (jobs.TerminationArgs{}).Kind() {
			perm = "delete"
		}
	}
	if err := s.decide(r, svc, perm); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return queries.Job{}, notFound("Job")
		}
		return queries.Job{}, err
	}
	return job, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	job, err := s.teamJob(r)
	if err != nil {
		return err
	}
	out := toJobJSON(job)
	// The secrets (a rescue password, console URLs) are the team's: a
	// platform key, or a grantee, looking at a team's job does not take
	// them, unless it started the job itself.
	c := callerOf(r)
	mine := !c.key.Platform && c.key.TeamID == job.TeamID || job.ApiKeyID.Valid && job.ApiKeyID.UUID == c.key.ID
	if job.SealedResult != nil && mine && callerMay(r, "services.write") {
		if out.Secrets, err = s.takeSecrets(r, job); err != nil {
			return err
		}
	}
	ok(w, http.StatusOK, "job", out)
	return nil
}

// takeSecrets opens the job's sealed result and clears it, so that the
// first reader with write access is the only one to see it.
func (s *Server) takeSecrets(r *http.Request, job queries.Job) (any, error) {
	sealed, err := s.Queries.TakeJobSealedResult(r.Context(), queries.TakeJobSealedResultParams{ID: job.ID, TeamID: job.TeamID})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil // another request took it first
	}
	if err != nil {
		return nil, err
	}
	var v any
	if err := s.Jobs.Sealer.Open(job.ID, sealed, &v); err != nil {
		return nil, err
	}
	s.logger(r).Info("job secrets shown and dropped", "job_id", job.ID)
	return v, nil
}

// cancelWaiting cancels a job that has not started. A service's
// termination cancelled so withdraws its cancellation (see
// service.Services.Withdraw), in the same transaction.
func (s *Server) cancelWaiting(r *http.Request, job queries.Job) (queries.Job, error) {
	if job.Kind == (jobs.TerminationArgs{}).Kind() {
		svc, err := s.Queries.GetService(r.Context(), job.ServiceID.UUID)
		if err != nil {
			return job, err
		}
		if svc.TerminationJobID.UUID == job.ID && svc.Status != "terminated" {
			var se *service.Error
			if _, err := s.Services.Withdraw(r.Context(), svc, actorOf(r)); errors.As(err, &se) && se.Key == "termination_started" {
				return job, pgx.ErrNoRows
			} else if err != nil {
				return job, err
			}
			return s.Queries.GetJob(r.Context(), job.ID)
		}
	}
	return s.Queries.CancelWaitingJob(r.Context(), queries.CancelWaitingJobParams{ID: job.ID, Error: "cancelled before it ran"})
}

// cancelJob stops a job: a job that waits (queued, scheduled, between
// attempts) is removed from its queue and ends cancelled at once; a running
// job's handler is told through asynq to stop, and ends cancelled at its next
// safe point (202).
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	job, err := s.teamJob(r)
	if err != nil {
		return err
	}
	job, err = s.Queries.RequestJobCancel(r.Context(), job.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		job, _ = s.teamJob(r)
		if !jobs.Finished(job.Status) {
			return &apiError{Status: http.StatusConflict, ErrorKey: "job_committed",
				Message: fmt.Sprintf("Job has passed its point of no return (step %s) and is carried through to its end", job.Step)}
		}
		return &apiError{Status: http.StatusConflict, ErrorKey: "job_finished",
			Message: fmt.Sprintf("Job has already ended (%s)", job.Status)}
	}
	if err != nil {
		return err
	}
	log := s.logger(r).With("job_id", job.ID, "kind", job.Kind, "service_id", job.ServiceID.UUID)
	taskID := job.ID.String()
	info, err := s.Inspector.GetTaskInfo(job.Queue, taskID)
	active := err == nil && info.State == asynq.TaskStateActive
	if !active && job.Step != "" {
		// Waiting between attempts with steps done: a worker must meet the
		// cancellation, between steps, to put back or report what the job
		// changed (a server it took, an install it started). Its task runs
		// now; a task lost from Redis comes back with the sweeper.
		if err == nil && info.State != asynq.TaskStatePending {
			if rerr := s.Inspector.RunTask(job.Queue, taskID); rerr != nil && !errors.Is(rerr, asynq.ErrTaskNotFound) {
				log.Warn("could not run the cancelled job's task now", "err", rerr)
			}
		}
		log.Info("job cancellation requested; a worker stops it between steps")
		ok(w, http.StatusAccepted, "job", toJobJSON(job))
		return nil
	}
	if !active {
		// Not running now, nothing done yet: take the task off its queue and
		// end the job. If a worker picks the task up meanwhile, it sees the
		// cancellation request before it does anything.
		if err == nil {
			if derr := s.Inspector.DeleteTask(job.Queue, taskID); derr != nil && !errors.Is(derr, asynq.ErrTaskNotFound) {
				log.Warn("could not delete the cancelled job's task", "err", derr)
			}
		}
		cancelled, cerr := s.cancelWaiting(r, job)
		if cerr == nil {
			log.Info("job cancelled")
			ok(w, http.StatusOK, "job", toJobJSON(cancelled))
			return nil
		}
		if !errors.Is(cerr, pgx.ErrNoRows) {
			return cerr
		}
		// It started running after all.
	}
	if err := s.Inspector.CancelProcessing(taskID); err != nil {
		return fmt.Errorf("cancel running task: %w", err)
	}
	log.Info("job cancellation requested")
	job, err = s.Queries.GetJob(r.Context(), job.ID)
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if jobs.Finished(job.Status) {
		status = http.StatusOK
	}
	ok(w, status, "job", toJobJSON(job))
	return nil
}

// eventJSON is one job event on the stream and in history.
type eventJSON struct {
	ID       int64     `json:"id"`
	JobID    uuid.UUID `json:"jobId"`
	Type     string    `json:"type"`
	Status   string    `json:"status"`
	Step     string    `json:"step"`
	Progress int16     `json:"progress"`
	Message  string    `json:"message,omitempty"`
	At       time.Time `json:"at"`
}

// startEventStream answers with the headers of a server-sent event stream,
// lifting the write deadline: the stream outlives the server's write
// timeout, which is meant for ordinary answers.
func startEventStream(w http.ResponseWriter) (*http.ResponseController, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	return rc, rc.Flush()
}

// jobEvents streams the job's events as server-sent events: first those the
// client has not seen (after Last-Event-ID), then each new one as it
// happens, and closes after the job's final status.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) error {
	job, err := s.teamJob(r)
	if err != nil {
		return err
	}
	var last int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		last, _ = strconv.ParseInt(v, 10, 64)
	}
	// Subscribe before reading, so that nothing falls between the two.
	wake, stop := s.Events.Subscribe(job.ID)
	defer stop()
	rc, err := startEventStream(w)
	if err != nil {
		return err
	}

	keepAlive := time.NewTicker(s.keepAlive())
	defer keepAlive.Stop()
	for {
		// Whether the job had ended before its events are read: then every
		// event it will ever have is among them (a status and its event are
		// written together).
		cur, err := s.Queries.GetJob(r.Context(), job.ID)
		var events []queries.JobEvent
		if err == nil {
			events, err = s.Queries.ListJobEvents(r.Context(), queries.ListJobEventsParams{JobID: job.ID, ID: last})
		}
		if err != nil {
			if r.Context().Err() == nil {
				s.logger(r).Error("read job events", "job_id", job.ID, "err", err)
			}
			return nil
		}
		ended := false
		for _, e := range events {
			b, _ := json.Marshal(eventJSON{ID: e.ID, JobID: e.JobID, Type: e.Type, Status: e.Status,
				Step: e.Step, Progress: e.Progress, Message: e.Message, At: e.At})
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
			last = e.ID
			ended = ended || (e.Type == "status" && jobs.Finished(e.Status))
		}
		// A client that resumed after the last event of a job that has
		// ended gets nothing more: it is told so.
		ended = ended || len(events) == 0 && jobs.Finished(cur.Status)
		if ended {
			fmt.Fprint(w, "event: end\ndata: {}\n\n")
			rc.Flush()
			return nil
		}
		rc.Flush()
		select {
		case <-r.Context().Done():
			return nil
		case <-wake:
		case <-keepAlive.C:
			if !s.stillAllowed(r) {
				fmt.Fprint(w, "event: end\ndata: access revoked\n\n")
				rc.Flush()
				return nil
			}
			// A comment keeps proxies from closing an idle stream; the loop
			// also re-reads, in case a notification was missed.
			fmt.Fprint(w, ": keep-alive\n\n")
		}
	}
}

// stillAllowed decides again, for a stream that runs on, whether it may:
// the key is still valid (not revoked, not expired, its person still a
// member of its team) and its role or grant still gives the route's
// permission on the service (a console token or session stands for the
// key that asked for it). Streams ask at every keep-alive.
func (s *Server) stillAllowed(r *http.Request) bool {
	st, c := stateOf(r), callerOf(r)
	if st.service == nil || c == nil {
		return true
	}
	ctx := r.Context()
	row, err := s.Keys.Lookup(ctx, c.key.KeyHash)
	if err != nil || row.ApiKey.RevokedAt != nil || row.Role == "" || row.ApiKey.ExpiresAt != nil && !row.ApiKey.ExpiresAt.After(time.Now()) {
		return false
	}
	a, err := s.serviceAccess(ctx, &caller{key: row.ApiKey, email: row.Email, role: row.Role}, *st.service)
	return err == nil && service.Holds(a.perms, st.perm)
}

func (s *Server) keepAlive() time.Duration {
	if s.Config.KeepAlive > 0 {
		return s.Config.KeepAlive
	}
	return 15 * time.Second
}
