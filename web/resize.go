package web

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"

	"github.com/hostfleet/provisiond/jobs"
)

// Plan bounds, as Proxmox accepts them.
const (
	maxCores    = 512
	minMemoryMB = 128
	maxMemoryMB = 4 << 20
	maxDiskGB   = 65536
	maxBackups  = 100
)

var backupPolicies = []string{"rotate", "refuse"}

// validatePlan checks plan limits.
func validatePlan(p jobs.Plan) []string {
	var errs []string
	if p.Cores < 1 || p.Cores > maxCores {
		errs = append(errs, fmt.Sprintf("plan.cores must be from 1 to %d", maxCores))
	}
	if p.MemoryMB < minMemoryMB || p.MemoryMB > maxMemoryMB {
		errs = append(errs, fmt.Sprintf("plan.memoryMb must be from %d to %d", minMemoryMB, maxMemoryMB))
	}
	if p.DiskGB < 1 || p.DiskGB > maxDiskGB {
		errs = append(errs, fmt.Sprintf("plan.diskGb must be from 1 to %d", maxDiskGB))
	}
	if p.BackupLimit < 0 || p.BackupLimit > maxBackups {
		errs = append(errs, fmt.Sprintf("plan.backupLimit must be from 0 to %d", maxBackups))
	}
	if p.BackupPolicy != "" && !slices.Contains(backupPolicies, p.BackupPolicy) {
		errs = append(errs, oneOf("plan.backupPolicy", backupPolicies))
	}
	return errs
}

// upgradeRequest changes some of a VPS's limits; what it leaves out stays.
type upgradeRequest struct {
	Cores    *int `json:"cores"`
	MemoryMB *int `json:"memoryMb"`
	DiskGB   *int `json:"diskGb"`
}

// planRequest replaces a VPS's plan.
type planRequest struct {
	Plan *jobs.Plan `json:"plan"`
}

// upgradeInfo answers the VPS's plan and what it may be changed to.
func (s *Server) upgradeInfo(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.proxmoxService(r)
	if err != nil {
		return err
	}
	plan, err := jobs.ServicePlan(&svc)
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "plan", plan, "limits", map[string]any{
		"cores":    map[string]int{"min": 1, "max": maxCores},
		"memoryMb": map[string]int{"min": minMemoryMB, "max": maxMemoryMB},
		"diskGb":   map[string]int{"min": plan.DiskGB, "max": maxDiskGB},
	})
	return nil
}

// upgrade resizes some of the VPS's limits.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) error {
	return s.resize(w, r, "upgrade", func(body []byte, current jobs.Plan) (jobs.Plan, *apiError) {
		var req upgradeRequest
		if aerr := decodeJSON(body, &req); aerr != nil {
			return current, aerr
		}
		if req.Cores == nil && req.MemoryMB == nil && req.DiskGB == nil {
			return current, invalid("give at least one of cores, memoryMb and diskGb")
		}
		next := current
		for _, f := range []struct {
			dst *int
			v   *int
		}{{&next.Cores, req.Cores}, {&next.MemoryMB, req.MemoryMB}, {&next.DiskGB, req.DiskGB}} {
			if f.v != nil {
				*f.dst = *f.v
			}
		}
		return next, nil
	})
}

// changePlan moves the VPS to another plan in place.
func (s *Server) changePlan(w http.ResponseWriter, r *http.Request) error {
	return s.resize(w, r, "change-plan", decodePlan)
}

// applyDowngrade moves the VPS to a smaller plan now.
func (s *Server) applyDowngrade(w http.ResponseWriter, r *http.Request) error {
	return s.resize(w, r, "downgrade", decodePlan)
}

func decodePlan(body []byte, _ jobs.Plan) (jobs.Plan, *apiError) {
	var req planRequest
	if aerr := decodeJSON(body, &req); aerr != nil {
		return jobs.Plan{}, aerr
	}
	if req.Plan == nil {
		return jobs.Plan{}, invalid("plan is required")
	}
	return *req.Plan, nil
}

// resize checks the new plan against the current one, refusing a smaller
// disk before any job exists, and starts the resize job.
func (s *Server) resize(w http.ResponseWriter, r *http.Request, reason string, next func([]byte, jobs.Plan) (jobs.Plan, *apiError)) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	current, err := jobs.ServicePlan(&svc)
	if err != nil {
		return err
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	plan, aerr := next(body, current)
	if aerr != nil {
		return aerr
	}
	if errs := validatePlan(plan); len(errs) > 0 {
		return invalid(errs...)
	}
	if plan.DiskGB < current.DiskGB {
		return invalid(fmt.Sprintf("diskGb cannot be smaller than the current %d GB: disks only grow", current.DiskGB))
	}
	if plan.AdditionalIPs == nil {
		plan.AdditionalIPs = current.AdditionalIPs // addresses are sold apart from plans
	}
	if reflect.DeepEqual(plan, current) {
		return invalid("the plan is the same as the current one")
	}
	return s.insertJob(w, r, svc.ID, jobs.ResizeArgs{ServiceID: svc.ID, Plan: plan, Reason: reason})
}
