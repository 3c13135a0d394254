package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/queries"
)

// grantJSON is a grant as its service's managers and its grantee see it.
type grantJSON struct {
	ID          uuid.UUID  `json:"id"`
	ResourceID  uuid.UUID  `json:"resourceId"`
	Email       string     `json:"email"`
	Permissions []string   `json:"permissions"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"createdAt"`
	RespondedAt *time.Time `json:"respondedAt"`
}

func toGrantJSON(g queries.Grant) grantJSON {
	return grantJSON{ID: g.ID, ResourceID: g.ServiceID, Email: g.Email, Permissions: append([]string{}, g.Permissions...),
		Status: g.Status, CreatedAt: g.CreatedAt, RespondedAt: g.RespondedAt}
}

// managedGrantJSON is a grant as its service's managers see it: with who
// made it ("" for a team's key of no person).
type managedGrantJSON struct {
	grantJSON
	GrantedBy string `json:"grantedBy"`
}

// sharedJSON is a grant as its grantee sees it, with the service's name.
type sharedJSON struct {
	grantJSON
	ServiceName     string `json:"serviceName"`
	ServiceProvider string `json:"serviceProvider"`
	TeamName        string `json:"teamName"`
}

func toSharedJSON(g queries.ListGrantsToRow) sharedJSON {
	return sharedJSON{grantJSON: toGrantJSON(queries.Grant{ID: g.ID, ServiceID: g.ServiceID, Email: g.Email, Permissions: g.Permissions,
		Status: g.Status, CreatedAt: g.CreatedAt, RespondedAt: g.RespondedAt}),
		ServiceName: g.ServiceName, ServiceProvider: g.ServiceProvider, TeamName: g.TeamName}
}

// serviceByID loads a service named outside the path (a query parameter,
// a body field) if the caller may do perm with it.
func (s *Server) serviceByID(r *http.Request, raw, perm string) (queries.Service, error) {
	id, err := uuid.Parse(raw)
	if err != nil {
		return queries.Service{}, notFound("Service")
	}
	svc, err := s.Queries.GetService(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		return svc, notFound("Service")
	}
	if err != nil {
		return svc, err
	}
	return svc, s.decide(r, svc, perm)
}

// listGrants answers the grants of the service ?resourceId= names.
func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.serviceByID(r, r.URL.Query().Get("resourceId"), "manage_permissions")
	if err != nil {
		return err
	}
	rows, err := s.Queries.ListServiceGrants(r.Context(), svc.ID)
	if err != nil {
		return err
	}
	out := []managedGrantJSON{}
	through := stateOf(r).access.grant != nil
	for _, g := range rows {
		// Through a grant one sees the grants one made, not the others'.
		if !through || g.Grant.GrantedBy.UUID == callerOf(r).key.PersonID.UUID {
			out = append(out, managedGrantJSON{grantJSON: toGrantJSON(g.Grant), GrantedBy: g.GrantedByEmail})
		}
	}
	ok(w, http.StatusOK, "permissions", out)
	return nil
}

// checkGrantable validates a grant's permissions: known ones, and none
// the granter does not hold itself (a grant never exceeds its granter).
func checkGrantable(r *http.Request, perms []string) *apiError {
	if len(perms) > len(service.Permissions) {
		return invalid(fmt.Sprintf("permissions may name at most the %d there are: %s", len(service.Permissions), strings.Join(service.Permissions, ", ")))
	}
	if len(perms) == 0 {
		return invalid("permissions must name at least one of: " + strings.Join(service.Permissions, ", "))
	}
	held := stateOf(r).access.perms
	var errs []string
	for i, p := range perms {
		switch {
		case !slices.Contains(service.Permissions, p):
			errs = append(errs, fmt.Sprintf("permissions[%d] is not one of: %s", i, strings.Join(service.Permissions, ", ")))
		case !service.Holds(held, p):
			errs = append(errs, "permissions: "+p+" is more than you hold on this service")
		}
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	return nil
}

// createGrant shares a service with a person by email: a pending grant
// (an invitation) the person accepts or declines.
func (s *Server) createGrant(w http.ResponseWriter, r *http.Request) error {
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		ResourceID  string   `json:"resourceId"`
		Email       string   `json:"email"`
		Permissions []string `json:"permissions"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if req.ResourceID == "" {
		return invalid("resourceId is required: the service to share")
	}
	svc, err := s.serviceByID(r, req.ResourceID, "manage_permissions")
	if err != nil {
		return err
	}
	req.Email = strings.ToLower(req.Email)
	if !ValidEmail(req.Email) {
		return invalid("email must be an email address")
	}
	perms := slices.Compact(slices.Sorted(slices.Values(req.Permissions)))
	if aerr := checkGrantable(r, perms); aerr != nil {
		return aerr
	}
	if req.Email == callerOf(r).email {
		return invalid("email is your own: you hold your access already")
	}
	g, err := s.Services.Grant(r.Context(), svc, req.Email, perms, callerOf(r).key.PersonID.UUID, grantOf(r))
	if err != nil {
		return err
	}
	ok(w, http.StatusCreated, "permission", toGrantJSON(g))
	return nil
}

// managedGrant loads the {id} grant for a manager of its service: a
// member of the service's team with manage_permissions manages every grant
// of it, a grantee with it only the grants they made.
func (s *Server) managedGrant(r *http.Request) (queries.Grant, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return queries.Grant{}, notFound("Permission")
	}
	g, err := s.Queries.GetGrant(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, notFound("Permission")
	}
	if err != nil {
		return g, err
	}
	if _, err := s.serviceByID(r, g.ServiceID.String(), "manage_permissions"); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return g, notFound("Permission")
		}
		return g, err
	}
	if a := stateOf(r).access; a.grant != nil && g.GrantedBy.UUID != callerOf(r).key.PersonID.UUID {
		return g, &apiError{Status: http.StatusForbidden, ErrorKey: "permission_required",
			Message: "Through a grant you manage only the grants you made", Extra: envelope{"permission": "manage_permissions"}}
	}
	return g, nil
}

// updateGrant changes what a grant allows, within what the manager holds.
func (s *Server) updateGrant(w http.ResponseWriter, r *http.Request) error {
	g, err := s.managedGrant(r)
	if err != nil {
		return err
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Permissions []string `json:"permissions"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	perms := slices.Compact(slices.Sorted(slices.Values(req.Permissions)))
	if aerr := checkGrantable(r, perms); aerr != nil {
		return aerr
	}
	if g, err = s.Services.SetGrant(r.Context(), g.ID, perms, grantOf(r)); err != nil {
		return err
	}
	ok(w, http.StatusOK, "permission", toGrantJSON(g))
	return nil
}

// revokeGrant ends a grant: its grantee loses the service at once, with
// the console sessions and streams opened through it.
func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownGrant(r, r.PathValue("id"))
	if err != nil || g.Status != "accepted" && g.Status != "pending" {
		// Not the caller's own open grant to give up: a manager's act.
		if g, err = s.managedGrant(r); err != nil {
			return err
		}
	}
	if g, err = s.Services.Revoke(r.Context(), g.ID); err != nil {
		return err
	}
	ok(w, http.StatusOK, "permission", toGrantJSON(g))
	return nil
}

// personOf is the caller's person, for what only a person may do (their
// invitations and grants).
func personOf(r *http.Request) (string, error) {
	if c := callerOf(r); c.email != "" {
		return c.email, nil
	}
	return "", &apiError{Status: http.StatusForbidden, ErrorKey: "person_required",
		Message: "This is a person's own: use a key that belongs to a person (provisiond keys create --user EMAIL)"}
}

// ownGrant loads the {id} grant addressed to the caller's person.
func (s *Server) ownGrant(r *http.Request, raw string) (queries.Grant, error) {
	email, err := personOf(r)
	if err != nil {
		return queries.Grant{}, err
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return queries.Grant{}, notFound("Permission")
	}
	g, err := s.Queries.GetGrant(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && g.Email != email {
		return queries.Grant{}, notFound("Permission")
	}
	return g, err
}

// grantDetails answers an invitation to its invitee.
func (s *Server) grantDetails(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownGrant(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "permission", toGrantJSON(g))
	return nil
}

// respondToGrant accepts or declines an invitation ({"id"}).
func (s *Server) respondToGrant(status string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, aerr := readBody(w, r)
		if aerr != nil {
			return aerr
		}
		var req struct {
			ID string `json:"id"`
		}
		if aerr := decodeJSON(body, &req); aerr != nil {
			return aerr
		}
		g, err := s.ownGrant(r, req.ID)
		if err != nil {
			return err
		}
		g, err = s.Queries.RespondToGrant(r.Context(), queries.RespondToGrantParams{ID: g.ID, Email: g.Email, Status: status})
		if errors.Is(err, pgx.ErrNoRows) {
			return &apiError{Status: http.StatusConflict, ErrorKey: "grant_not_pending", Message: "The invitation was answered or revoked already"}
		}
		if err != nil {
			return err
		}
		s.logger(r).Info("invitation answered", "grant_id", g.ID, "status", g.Status)
		ok(w, http.StatusOK, "permission", toGrantJSON(g))
		return nil
	}
}

var grantStatuses = []string{"pending", "accepted", "declined", "revoked"}

// sharedWithMe answers the grants addressed to the caller's person
// (?status= narrows them).
func (s *Server) sharedWithMe(w http.ResponseWriter, r *http.Request) error {
	email, err := personOf(r)
	if err != nil {
		return err
	}
	var status *string
	if v := r.URL.Query().Get("status"); v != "" {
		if !slices.Contains(grantStatuses, v) {
			return invalid(oneOf("status", grantStatuses))
		}
		status = &v
	}
	rows, err := s.Queries.ListGrantsTo(r.Context(), queries.ListGrantsToParams{Email: email, Status: status})
	if err != nil {
		return err
	}
	out := make([]sharedJSON, len(rows))
	for i, g := range rows {
		out[i] = toSharedJSON(g)
	}
	ok(w, http.StatusOK, "permissions", out)
	return nil
}
