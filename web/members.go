package web

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/queries"
)

// memberJSON is a team member.
type memberJSON struct {
	PersonID uuid.UUID `json:"personId"`
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joinedAt"`
}

// listMembers answers the team's members.
func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) error {
	team, err := s.teamOf(r)
	if err != nil {
		return err
	}
	rows, err := s.Queries.ListTeamMembers(r.Context(), team)
	if err != nil {
		return err
	}
	out := make([]memberJSON, len(rows))
	for i, m := range rows {
		out[i] = memberJSON{PersonID: m.PersonID, Email: m.Email, Name: m.Name, Role: m.Role, JoinedAt: m.CreatedAt}
	}
	ok(w, http.StatusOK, "members", out)
	return nil
}

// errOwnersOnly answers an admin's attempt at what only owners may do:
// make or unmake owners.
var errOwnersOnly = &apiError{Status: http.StatusForbidden, ErrorKey: "role_required",
	Message: "Only the team's owners may give or take the owner role", Extra: envelope{"role": "owner"}}

// isOwner reports whether the caller acts as an owner of its team: an
// owner's key, the team's own key, or a platform key.
func (c *caller) isOwner() bool { return c.key.Platform || c.role == "owner" }

// addMember adds a person, by email, to the team with a role (member by
// default); the person is made known by their email when they are not.
func (s *Server) addMember(w http.ResponseWriter, r *http.Request) error {
	team, err := s.teamOf(r)
	if err != nil {
		return err
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	req.Email = strings.ToLower(req.Email)
	if req.Role == "" {
		req.Role = "member"
	}
	var errs []string
	if !ValidEmail(req.Email) {
		errs = append(errs, "email must be an email address")
	}
	if !slices.Contains(service.Roles, req.Role) {
		errs = append(errs, oneOf("role", service.Roles))
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	if req.Role == "owner" && !callerOf(r).isOwner() {
		return errOwnersOnly
	}
	p, err := s.Queries.EnsurePerson(r.Context(), req.Email)
	if err != nil {
		return err
	}
	// Added only when not a member: a concurrent add must not change the
	// role of a member (an owner) in passing.
	m, err := s.Queries.AddTeamMember(r.Context(), queries.AddTeamMemberParams{TeamID: team, PersonID: p.ID, Role: req.Role})
	if errors.Is(err, pgx.ErrNoRows) {
		return &apiError{Status: http.StatusConflict, ErrorKey: "already_member", Message: req.Email + " is a member of the team already"}
	}
	if err != nil {
		return err
	}
	s.logger(r).Info("team member added", "person_id", p.ID, "role", m.Role)
	ok(w, http.StatusCreated, "member", memberJSON{PersonID: p.ID, Email: p.Email, Name: p.Name, Role: m.Role, JoinedAt: m.CreatedAt})
	return nil
}

// teamMember loads the {personId} member of the team.
func (s *Server) teamMember(r *http.Request, team uuid.UUID) (queries.TeamMember, queries.Person, error) {
	id, err := uuid.Parse(r.PathValue("personId"))
	if err != nil {
		return queries.TeamMember{}, queries.Person{}, notFound("Member")
	}
	m, err := s.Queries.GetTeamMember(r.Context(), queries.GetTeamMemberParams{TeamID: team, PersonID: id})
	if errors.Is(err, pgx.ErrNoRows) {
		return m, queries.Person{}, notFound("Member")
	}
	if err != nil {
		return m, queries.Person{}, err
	}
	p, err := s.Queries.GetPerson(r.Context(), id)
	return m, p, err
}

// changeMemberRole gives a member another role; only owners make or
// unmake owners, and the last owner stays one.
func (s *Server) changeMemberRole(w http.ResponseWriter, r *http.Request) error {
	team, err := s.teamOf(r)
	if err != nil {
		return err
	}
	m, p, err := s.teamMember(r, team)
	if err != nil {
		return err
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return aerr
	}
	var req struct {
		Role string `json:"role"`
	}
	if aerr := decodeJSON(body, &req); aerr != nil {
		return aerr
	}
	if !slices.Contains(service.Roles, req.Role) {
		return invalid(oneOf("role", service.Roles))
	}
	if (req.Role == "owner" || m.Role == "owner") && !callerOf(r).isOwner() {
		return errOwnersOnly
	}
	if m, err = s.Services.SetMemberRole(r.Context(), team, m.PersonID, req.Role); err != nil {
		return err
	}
	s.logger(r).Info("team member's role changed", "person_id", p.ID, "role", m.Role)
	ok(w, http.StatusOK, "member", memberJSON{PersonID: p.ID, Email: p.Email, Name: p.Name, Role: m.Role, JoinedAt: m.CreatedAt})
	return nil
}

// removeMember removes a member from the team, with the keys they held in
// it; only owners remove owners, and the last owner stays.
func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) error {
	team, err := s.teamOf(r)
	if err != nil {
		return err
	}
	m, _, err := s.teamMember(r, team)
	if err != nil {
		return err
	}
	if m.Role == "owner" && !callerOf(r).isOwner() {
		return errOwnersOnly
	}
	if err := s.Services.RemoveMember(r.Context(), team, m.PersonID); err != nil {
		return err
	}
	s.logger(r).Info("team member removed", "person_id", m.PersonID)
	ok(w, http.StatusOK, "removed", true)
	return nil
}

// leaveTeam takes the caller's person out of the team, with their keys in
// it (this one included); the last owner cannot leave.
func (s *Server) leaveTeam(w http.ResponseWriter, r *http.Request) error {
	team, err := s.teamOf(r)
	if err != nil {
		return err
	}
	c := callerOf(r)
	if err := s.Services.RemoveMember(r.Context(), team, c.key.PersonID.UUID); err != nil {
		return err
	}
	s.logger(r).Info("team member left", "person_id", c.key.PersonID.UUID)
	ok(w, http.StatusOK, "left", true)
	return nil
}
