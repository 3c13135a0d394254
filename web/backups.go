package web

import (
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/jobs"
)

// backupRequest is the body of a backup request.
type backupRequest struct {
	Note string `json:"note"`
}

// listBackups answers the VPS's backups, live from Proxmox, oldest first.
func (s *Server) listBackups(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.liveVPS(r)
	if err != nil {
		return err
	}
	backups, err := s.VPS.Backups(r.Context(), &svc, s.logger(r))
	if err != nil {
		return liveReadError(&svc, err)
	}
	ok(w, http.StatusOK, "backups", backups)
	return nil
}

// createBackup starts a backup job, after checking the plan's limit.
func (s *Server) createBackup(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	var req backupRequest
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	if len(req.Note) > 200 {
		return invalid("note must be at most 200 characters")
	}
	plan, err := jobs.ServicePlan(&svc)
	if err != nil {
		return err
	}
	if plan.BackupLimit > 0 && plan.BackupPolicy == "refuse" {
		n, err := s.VPS.CountBackups(r.Context(), &svc)
		if err != nil {
			return providerError(err)
		}
		if n >= plan.BackupLimit {
			return &apiError{Status: http.StatusConflict, ErrorKey: "backup_limit_reached",
				Message: fmt.Sprintf("The plan keeps at most %d backups; delete one first", plan.BackupLimit)}
		}
	}
	return s.insertJob(w, r, svc.ID, jobs.BackupArgs{ServiceID: svc.ID, Note: req.Note})
}

// backupFor loads the {id} service and checks that {backupId} is one of its
// VM's backups.
func (s *Server) backupFor(r *http.Request) (uuid.UUID, string, error) {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return uuid.Nil, "", err
	}
	id := r.PathValue("backupId")
	found, err := s.VPS.HasBackup(r.Context(), &svc, id)
	if err != nil {
		return uuid.Nil, "", providerError(err)
	}
	if !found {
		return uuid.Nil, "", notFound("Backup")
	}
	return svc.ID, id, nil
}

// restoreBackup restores the VPS in place from one of its backups.
func (s *Server) restoreBackup(w http.ResponseWriter, r *http.Request) error {
	svc, id, err := s.backupFor(r)
	if err != nil {
		return err
	}
	return s.insertJob(w, r, svc, jobs.RestoreArgs{ServiceID: svc, BackupID: id})
}

// deleteBackup deletes one of the VPS's backups.
func (s *Server) deleteBackup(w http.ResponseWriter, r *http.Request) error {
	svc, id, err := s.backupFor(r)
	if err != nil {
		return err
	}
	return s.insertJob(w, r, svc, jobs.BackupDeleteArgs{ServiceID: svc, BackupID: id})
}
