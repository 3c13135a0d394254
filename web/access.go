package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"

	"github.com/google/uuid"
	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/queries"
	"github.com/jackc/pgx/v5"
)

// ValidEmail reports whether s is a bare email address (no display name),
// as people are known by.
func ValidEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254 && a.Name == ""
}

// Route permissions that are not one service's (see Server.routes).
const (
	// permTeam: a member of the route's team, in any role (or the team's
	// own key, or a platform key).
	permTeam = "team"
	// permTeamAdmin: an owner or admin of the route's team.
	permTeamAdmin = "team_admin"
	// permPlatform: a platform key (see PlatformRequest).
	permPlatform = "platform"
	// permAction: the power action's own permission (see actionPermission).
	permAction = "action"
	// permPerson: a person's own key (their invitations and grants).
	permPerson = "person"
	// permTeamPerson: a member's own key, in the route's team (leaving it).
	permTeamPerson = "team_person"
	// permJob: what the job's service needs to see it (view), or to
	// cancel it (settings; delete for a termination).
	permJob = "job"
)

type routeKey struct{}

// routeState is what authorisation learns of a request: the permission its
// route declares, and the access it was given (with the grant a job
// records).
type routeState struct {
	perm   string
	access *access
	// service is the service the access was decided for.
	service *queries.Service
}

// withPermission records the permission the route declares.
func withPermission(r *http.Request, perm string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), routeKey{}, &routeState{perm: perm}))
}

func stateOf(r *http.Request) *routeState {
	st, _ := r.Context().Value(routeKey{}).(*routeState)
	if st == nil {
		return &routeState{}
	}
	return st
}

// routePermission is the permission the request's route declares.
func routePermission(r *http.Request) string { return stateOf(r).perm }

// access is what the caller may do with one service.
type access struct {
	perms []string
	// grant is the grant the access comes through; nil for the caller's
	// own team's service (or a platform key).
	grant *queries.Grant
}

// serviceAccess decides, in one place, what the caller may do with svc:
// everything with a platform key; what their role gives on their own
// team's services; what an accepted grant gives on another's; nothing
// otherwise (the service is not theirs to know of). The key's scopes cap
// all of it (see authorize).
func (s *Server) serviceAccess(ctx context.Context, c *caller, svc queries.Service) (access, error) {
	switch {
	case c.key.Platform:
		return access{perms: service.Permissions}, nil
	case c.key.TeamID == svc.TeamID:
		return access{perms: service.RolePermissions[c.role]}, nil
	case c.email == "":
		return access{}, nil
	}
	g, err := s.Queries.AcceptedGrant(ctx, queries.AcceptedGrantParams{ServiceID: svc.ID, Email: c.email})
	if errors.Is(err, pgx.ErrNoRows) {
		return access{}, nil
	}
	if err != nil {
		return access{}, fmt.Errorf("load grant: %w", err)
	}
	return access{perms: g.Permissions, grant: &g}, nil
}

// decide answers the caller's request for perm on svc: 404 when the
// caller has no access to the service at all, 403 naming the permission
// when it lacks it. The access granted is kept with the request, so that
// a job records the grant it came through.
func (s *Server) decide(r *http.Request, svc queries.Service, perm string) error {
	a, err := s.serviceAccess(r.Context(), callerOf(r), svc)
	if err != nil {
		return err
	}
	if len(a.perms) == 0 {
		return notFound("Service")
	}
	if !service.Holds(a.perms, perm) {
		return errPermission(perm)
	}
	st := stateOf(r)
	st.perm, st.access, st.service = perm, &a, &svc
	return nil
}

// grantOf is the grant the request's access to its service came through.
func grantOf(r *http.Request) uuid.UUID {
	if a := stateOf(r).access; a != nil && a.grant != nil {
		return a.grant.ID
	}
	return uuid.Nil
}

// errPermission answers a caller who may see the service but lacks perm.
func errPermission(perm string) *apiError {
	return &apiError{Status: http.StatusForbidden, ErrorKey: "permission_required",
		Message: "This needs the " + perm + " permission on the service", Extra: envelope{"permission": perm}}
}

// teamAccess answers the caller's request on a team's resources: any
// member may read them (permTeam), owners and admins may change them
// (permTeamAdmin); another team is not found.
func teamAccess(c *caller, team uuid.UUID, perm string) error {
	switch {
	case c.key.Platform && perm != permTeamPerson:
		return nil
	case c.key.TeamID != team:
		return notFound("Team")
	case perm == permTeamPerson && !c.key.PersonID.Valid:
		return &apiError{Status: http.StatusForbidden, ErrorKey: "person_required",
			Message: "Only a member's own key can do this; this key belongs to no member"}
	case perm == permTeamAdmin && c.role != "owner" && c.role != "admin":
		return &apiError{Status: http.StatusForbidden, ErrorKey: "role_required",
			Message: "Only the team's owners and admins may do this", Extra: envelope{"role": "admin"}}
	}
	return nil
}

// actionPermission is the permission a power action needs (seed 000): a
// kill stops, a reset restarts; suspend and resume are the platform's.
func actionPermission(action string) string {
	switch action {
	case "start":
		return "start"
	case "stop", "kill":
		return "stop"
	case "restart", "reset":
		return "restart"
	}
	return "settings"
}
