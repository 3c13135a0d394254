package web

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/queries"
)

// cancellationJSON is a service's cancellation as the API shows it.
func cancellationJSON(svc queries.Service) map[string]any {
	if !svc.TerminationJobID.Valid {
		return nil
	}
	return map[string]any{"when": svc.CancelWhen, "cancellationReason": svc.CancellationReason, "cancelledAt": svc.CancelledAt,
		"terminateAt": svc.TerminateAt, "terminationJobId": svc.TerminationJobID.UUID}
}

// cancelService schedules the service's termination (see
// service.Services.Cancel). A second cancel answers with the first one's
// termination.
func (s *Server) cancelService(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	if svc.Status == "terminated" {
		return usable(svc)
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		When   string `json:"when"`
		Reason string `json:"cancellationReason"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	c, err := s.Services.Cancel(r.Context(), svc, req.When, req.Reason, actorOf(r))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if c.Created {
		status = http.StatusAccepted
	}
	answerCancellation(w, status, c)
	return nil
}

// actorOf is the caller as job rows record it.
func actorOf(r *http.Request) service.Actor {
	c := callerOf(r)
	return service.Actor{APIKeyID: c.key.ID, PersonID: c.key.PersonID.UUID, GrantID: grantOf(r), By: c.requestedBy()}
}

// answerCancellation answers with the service, its cancellation, the
// termination job and, when the cancellation just queued one, the job that
// suspends the service (suspensionJob).
func answerCancellation(w http.ResponseWriter, status int, c service.Cancellation) {
	var job, suspending any
	if c.Termination != nil {
		job = toJobJSON(*c.Termination)
	}
	if c.Suspension != nil {
		suspending = toJobJSON(*c.Suspension)
	}
	ok(w, status, "service", toServiceJSON(c.Service), "cancellation", cancellationJSON(c.Service), "job", job, "suspensionJob", suspending)
}

// withdrawCancellation removes a termination that has not started, and
// resumes the service if its cancellation suspended it.
func (s *Server) withdrawCancellation(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	updated, err := s.Services.Withdraw(r.Context(), svc, actorOf(r))
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "service", toServiceJSON(updated))
	return nil
}

// renew moves the service's billing period end, and with it a termination
// scheduled for the end of the period.
func (s *Server) renew(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.teamService(r)
	if err != nil {
		return err
	}
	// A service that needs repair is still the customer's to pay for.
	if aerr := usable(svc); aerr != nil && svc.Status != "needs_repair" {
		return aerr
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		End string `json:"billingPeriodEnd"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	end, err := time.Parse(time.RFC3339, req.End)
	if err != nil {
		return invalid("billingPeriodEnd must be an RFC 3339 time such as 2026-12-31T00:00:00Z")
	}
	c, err := s.Services.Renew(r.Context(), svc, end)
	if err != nil {
		return err
	}
	answerCancellation(w, http.StatusOK, c)
	return nil
}

// ipCancellation schedules (POST) or undoes (DELETE) the release of one of
// the VPS's additional IPs at the end of its billing period.
func (s *Server) ipCancellation(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.usableProxmoxService(r)
	if err != nil {
		return err
	}
	var req struct {
		IP string `json:"ip"`
	}
	if aerr := readOptionalJSON(w, r, &req); aerr != nil {
		return aerr
	}
	if req.IP == "" {
		req.IP = r.URL.Query().Get("ip")
	}
	if _, err := netip.ParseAddr(req.IP); err != nil {
		return invalid("ip must be an IPv4 or IPv6 address")
	}
	if r.Method == http.MethodDelete {
		job, err := s.Services.KeepIP(r.Context(), svc, req.IP)
		if err != nil {
			return err
		}
		ok(w, http.StatusOK, "job", toJobJSON(job))
		return nil
	}
	rel, err := s.Services.ReleaseIP(r.Context(), svc, req.IP, actorOf(r))
	if err != nil {
		return err
	}
	if !rel.Created {
		ok(w, http.StatusOK, "job", toJobJSON(rel.Job), "releaseAt", rel.Job.RunAt)
		return nil
	}
	ok(w, http.StatusAccepted, "job", toJobJSON(rel.Job), "releaseAt", svc.BillingPeriodEnd.UTC())
	return nil
}

// now is the API's clock: Config.Now, or the wall clock.
func (s *Server) now() time.Time {
	if s.Config.Now != nil {
		return s.Config.Now()
	}
	return time.Now()
}
