package sim

import (
	"cmp"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// backupItem is a backup as the client API shows it.
func backupItem(b *backupState) map[string]any {
	var completed, checksum any
	if !b.CompletedAt.IsZero() {
		completed = timestamp(b.CompletedAt)
	}
	if b.Checksum != "" {
		checksum = b.Checksum
	}
	ignored := b.IgnoredFiles
	if ignored == nil {
		ignored = []string{}
	}
	return item("backup", map[string]any{"uuid": b.UUID, "is_successful": b.Successful, "is_locked": b.Locked,
		"name": b.Name, "ignored_files": ignored, "checksum": checksum, "bytes": b.Bytes,
		"created_at": timestamp(b.CreatedAt), "completed_at": completed})
}

// nonFailed counts the backups that count against the limit: those that
// succeeded and those still running; the lock must be held.
func nonFailed(gs *serverState) int {
	n := 0
	for _, b := range gs.backups {
		if b.Successful || b.CompletedAt.IsZero() {
			n++
		}
	}
	return n
}

func (s *Server) listBackups(r *http.Request, c *call) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []map[string]any
	for _, b := range c.srv.backups {
		items = append(items, backupItem(b))
	}
	out := paged(r, items, 20, 50)
	out["meta"].(map[string]any)["backup_count"] = nonFailed(c.srv)
	return http.StatusOK, out, nil
}

// createBackup starts a backup that completes after TaskDuration, refused
// past the throttle (429) or the server's backup limit as the panel's
// InitiateBackupService refuses it.
func (s *Server) createBackup(r *http.Request, c *call) (int, any, error) {
	body, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	if err := validate(body, []check{
		{field: "name", rules: "nullable|string|max:191"},
		{field: "is_locked", rules: "nullable|boolean"},
		{field: "ignored", rules: "nullable|string"},
	}); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs := c.srv
	now := time.Now()
	if period, limit := s.cfg.BackupThrottlePeriod, s.cfg.BackupThrottleLimit; period > 0 {
		var recent []*backupState
		for _, b := range gs.backups {
			if now.Sub(b.CreatedAt) < period {
				recent = append(recent, b)
			}
		}
		if len(recent) >= limit {
			wait := recent[len(recent)-1].CreatedAt.Add(period).Sub(now)
			return 0, nil, &apiError{status: http.StatusTooManyRequests, code: "TooManyRequestsHttpException",
				detail:     fmt.Sprintf("Only %d backups may be generated within a %d second span of time.", limit, int(period.Seconds())),
				retryAfter: wait}
		}
	}
	if limit := gs.FeatureLimits.Backups; limit <= 0 || nonFailed(gs) >= limit {
		return 0, nil, displayError("TooManyBackupsException",
			fmt.Sprintf("Cannot create a new backup, this server has reached its limit of %d backups.", limit))
	}
	name := text(body["name"])
	if name == "" {
		name = "Backup at " + now.UTC().Format(time.DateTime)
	}
	var ignored []string
	for f := range strings.SplitSeq(text(body["ignored"]), "\n") {
		if f != "" {
			ignored = append(ignored, f)
		}
	}
	locked, _ := boolean(body["is_locked"])
	b := &backupState{Backup: Backup{UUID: uuid.NewString(), ServerID: gs.ID, Name: name, IgnoredFiles: ignored,
		Locked: locked, CreatedAt: now}}
	gs.backups = append(gs.backups, b)
	taskErr := c.taskError
	b.timer = s.later(gs, s.cfg.TaskDuration, func() {
		if b.deleted {
			return
		}
		b.CompletedAt = time.Now()
		payload := map[string]any{"uuid": b.UUID, "is_successful": taskErr == "", "checksum_type": "sha1"}
		if taskErr == "" {
			sum := sha1.Sum([]byte(b.UUID))
			b.Successful, b.Checksum, b.Bytes = true, "sha1:"+hex.EncodeToString(sum[:]), 48*mib
			payload["checksum"], payload["file_size"] = hex.EncodeToString(sum[:]), b.Bytes
		} else {
			// A failed backup loses its lock, as the panel clears it.
			b.Locked = false
			payload["checksum"], payload["file_size"] = "", 0
		}
		j, _ := json.Marshal(payload)
		s.broadcast(gs, "backup completed:"+b.UUID, string(j))
	})
	return http.StatusOK, backupItem(b), nil
}

// backupHandler is a handler on one backup, given the request body.
type backupHandler func(r *http.Request, c *call, b *backupState, body map[string]any) (int, any, error)

// onBackup returns a handler that runs fn, under the lock, on the backup
// the path names.
func (s *Server) onBackup(fn backupHandler) handler {
	return func(r *http.Request, c *call) (int, any, error) {
		body, err := readBody(r)
		if err != nil {
			return 0, nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, b := range c.srv.backups {
			if b.UUID == r.PathValue("backup") {
				return fn(r, c, b, body)
			}
		}
		return 0, nil, notFound()
	}
}

func (s *Server) getBackup(_ *http.Request, _ *call, b *backupState, _ map[string]any) (int, any, error) {
	return http.StatusOK, backupItem(b), nil
}

func (s *Server) lockBackup(_ *http.Request, _ *call, b *backupState, _ map[string]any) (int, any, error) {
	b.Locked = !b.Locked
	return http.StatusOK, backupItem(b), nil
}

// downloadBackup signs a one-time download URL on Wings, valid for
// DownloadLifetime.
func (s *Server) downloadBackup(r *http.Request, c *call, b *backupState, _ map[string]any) (int, any, error) {
	token, err := s.downloadToken(r, c.srv, c.user, b)
	if err != nil {
		return 0, nil, err
	}
	url := baseURL(r, s.cfg.BaseURL) + "/download/backup?token=" + token
	return http.StatusOK, map[string]any{"object": "signed_url", "attributes": map[string]any{"url": url}}, nil
}

// restoreBackup restores a backup: Wings stops the server and the server
// is restoring_backup for TaskDuration. Like the panel's
// BackupController::restore, it refuses only a backup still running
// (!is_successful && completed_at null): one that completed without
// success goes to Wings, whose restore of its incomplete archive then
// fails.
func (s *Server) restoreBackup(_ *http.Request, c *call, b *backupState, body map[string]any) (int, any, error) {
	if err := validate(body, []check{{field: "truncate", rules: "required|boolean"}}); err != nil {
		return 0, nil, err
	}
	gs := c.srv
	if gs.Status != "" {
		return 0, nil, badRequest("This server is not currently in a state that allows for a backup to be restored.")
	}
	if !b.Successful && b.CompletedAt.IsZero() {
		return 0, nil, badRequest("This backup cannot be restored at this time: not completed or failed.")
	}
	gs.Status = StatusRestoringBackup
	s.power(gs, "kill", "")
	taskErr := c.taskError
	if taskErr == "" && !b.Successful {
		taskErr = "the archive of a failed backup is incomplete"
	}
	gs.restore = s.later(gs, s.cfg.TaskDuration, func() {
		if gs.Status == StatusRestoringBackup {
			gs.Status = ""
		}
		if taskErr != "" {
			s.consoleLine(gs, "[Pterodactyl Daemon]: Encountered error while restoring backup: "+taskErr)
			return
		}
		s.broadcast(gs, "daemon message", "Completed server restoration from local backup.")
		s.broadcast(gs, "backup restore completed", "")
	})
	return http.StatusNoContent, nil, nil
}

// deleteBackup deletes a backup unless it is a locked one that succeeded.
// A backup still running is cancelled.
func (s *Server) deleteBackup(_ *http.Request, c *call, b *backupState, _ map[string]any) (int, any, error) {
	if b.Locked && b.Successful && !b.CompletedAt.IsZero() {
		return 0, nil, displayError("BackupLockedException", "Cannot delete a backup that is marked as locked.")
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	b.deleted = true
	gs := c.srv
	for i, x := range gs.backups {
		if x == b {
			gs.backups = append(gs.backups[:i:i], gs.backups[i+1:]...)
			break
		}
	}
	return http.StatusNoContent, nil, nil
}

// fetchBackup is Wings' GET /download/backup?token=...: the archive of a
// completed backup, once per token.
func (s *Server) fetchBackup(w http.ResponseWriter, r *http.Request) {
	idx := s.Begin(r, "backups.fetch", "")
	status := s.serveFetch(w, r, idx)
	s.Finish(idx, status)
}

func (s *Server) serveFetch(w http.ResponseWriter, r *http.Request, idx int) int {
	claims, err := s.parseDownloadToken(r.URL.Query().Get("token"))
	if err != nil {
		return wingsError(w, http.StatusInternalServerError, "An unexpected error was encountered while processing this request")
	}
	s.SetTarget(idx, claims.BackupUUID)
	f := s.Next("backups.fetch", claims.BackupUUID)
	if !s.Wait(r.Context(), f) {
		return 0
	}
	if f.Status >= 400 {
		return wingsFault(w, f)
	}
	s.mu.Lock()
	used := s.downloads[claims.UniqueID]
	s.downloads[claims.UniqueID] = true
	var found *backupState
	for _, gs := range s.servers {
		for _, b := range gs.backups {
			if gs.UUID == claims.ServerUUID && b.UUID == claims.BackupUUID && b.Successful {
				found = b
			}
		}
	}
	s.mu.Unlock()
	if used {
		return wingsError(w, http.StatusNotFound, "The requested resource was not found on this server.")
	}
	if found == nil {
		return wingsError(w, http.StatusNotFound, "The requested backup was not found on this server.")
	}
	body := []byte("simulated backup archive " + found.UUID + "\n")
	hdr := http.Header{"Content-Type": {"application/octet-stream"},
		"Content-Disposition": {"attachment; filename=" + strconv.Quote(found.UUID+".tar.gz")}}
	if f.Drop {
		simkit.DropMidResponse(w, hdr, body)
		return http.StatusOK
	}
	maps.Copy(w.Header(), hdr)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return http.StatusOK
}

// wingsError answers in Wings' error shape and returns the status.
func wingsError(w http.ResponseWriter, status int, msg string) int {
	b, _ := json.Marshal(map[string]string{"error": msg, "request_id": uuid.NewString()})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
	return status
}

// wingsFault answers a call a fault refuses, in Wings' error shape.
func wingsFault(w http.ResponseWriter, f simkit.Fault) int {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", simkit.RetryAfterSeconds(f.RetryAfter))
	}
	return wingsError(w, f.Status, cmp.Or(f.Message, http.StatusText(f.Status)))
}
