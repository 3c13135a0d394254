package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hostfleet/provisiond/queries"
)

// Roles are a team member's roles, from most to least trusted.
var Roles = []string{"owner", "admin", "member"}

// Permissions are what may be done to one service (seed 000's permission
// names). A grant shares some of them with a person; a team member's role
// gives them (see RolePermissions). "backup" covers the three backup_*
// permissions.
var Permissions = []string{"view", "start", "stop", "restart", "console", "backup", "backup_create", "backup_restore",
	"backup_delete", "backup_schedule", "settings", "delete", "manage_permissions"}

// RolePermissions are the service permissions of each role on its team's
// services: members run and change services but neither cancel them nor
// share them.
var RolePermissions = map[string][]string{
	"owner":  Permissions,
	"admin":  Permissions,
	"member": slices.DeleteFunc(slices.Clone(Permissions), func(p string) bool { return p == "delete" || p == "manage_permissions" }),
}

// Holds reports whether a set of permissions includes perm; "backup"
// covers backup_create, backup_restore and backup_delete.
func Holds(set []string, perm string) bool {
	if slices.Contains(set, perm) {
		return true
	}
	return strings.HasPrefix(perm, "backup_") && perm != "backup_schedule" && slices.Contains(set, "backup")
}

// errLastOwner refuses what would leave a team without an owner.
var errLastOwner = &Error{Code: Conflict, Key: "last_owner", Message: "A team keeps at least one owner; make another member owner first"}

// SetMemberRole gives a member another role; the team's last owner stays
// one (changes of one team's members are serialised, so that two at once
// cannot both take the last owner away).
func (s *Services) SetMemberRole(ctx context.Context, team, person uuid.UUID, role string) (queries.TeamMember, error) {
	var m queries.TeamMember
	err := s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
		if err := q.LockTeam(ctx, team); err != nil {
			return err
		}
		var err error
		m, err = q.SetTeamMemberRole(ctx, queries.SetTeamMemberRoleParams{TeamID: team, PersonID: person, Role: role})
		if errors.Is(err, pgx.ErrNoRows) {
			return errLastOwner
		}
		return err
	})
	return m, err
}

// RemoveMember takes the person out of the team and revokes the keys they
// held in it, in one transaction; the team's last owner stays.
func (s *Services) RemoveMember(ctx context.Context, team, person uuid.UUID) error {
	return s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
		if err := q.LockTeam(ctx, team); err != nil {
			return err
		}
		n, err := q.RemoveTeamMember(ctx, queries.RemoveTeamMemberParams{TeamID: team, PersonID: person})
		if err != nil {
			return err
		}
		if n == 0 {
			return errLastOwner
		}
		_, err = q.RevokePersonTeamKeys(ctx, queries.RevokePersonTeamKeysParams{TeamID: team, PersonID: uuid.NullUUID{UUID: person, Valid: true}})
		return err
	})
}

// Grant shares the service with a person, by email, with perms; the
// grantee accepts or declines it. A second open grant to the same email
// is refused. through is the grant the granter acts through (uuid.Nil for
// a member of the service's team): it is locked and must still give perms,
// so that a revocation of it and a grant made through it do not
// interleave (the revocation then finds the new grant and revokes it).
func (s *Services) Grant(ctx context.Context, svc queries.Service, email string, perms []string, by, through uuid.UUID) (queries.Grant, error) {
	var g queries.Grant
	err := s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
		if err := stillGives(ctx, q, through, perms); err != nil {
			return err
		}
		var err error
		g, err = q.CreateGrant(ctx, queries.CreateGrantParams{ServiceID: svc.ID, Email: email, Permissions: perms,
			GrantedBy: uuid.NullUUID{UUID: by, Valid: by != uuid.Nil}})
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.ConstraintName == "grants_one_open" {
			return &Error{Code: Conflict, Key: "grant_exists", Message: email + " has a pending or accepted grant on this service already; change it instead"}
		}
		if err != nil {
			return fmt.Errorf("record grant: %w", err)
		}
		return nil
	})
	if err == nil {
		s.Log.Info("service shared", "service_id", svc.ID, "provider", svc.Provider, "grant_id", g.ID, "permissions", perms)
	}
	return g, err
}

// stillGives locks the grant a grantee acts through (none: uuid.Nil) and
// refuses when it no longer gives perms (revoked or narrowed meanwhile).
func stillGives(ctx context.Context, q *queries.Queries, through uuid.UUID, perms []string) error {
	if through == uuid.Nil {
		return nil
	}
	g, err := q.LockGrant(ctx, through)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	ok := err == nil && g.Status == "accepted" && Holds(g.Permissions, "manage_permissions")
	for _, p := range perms {
		ok = ok && Holds(g.Permissions, p)
	}
	if !ok {
		return &Error{Code: Conflict, Key: "grant_ended", Message: "The grant you share through was changed or revoked meanwhile"}
	}
	return nil
}

// SetGrant changes what a grant allows; the grants its grantee made on
// the service through it are kept within it. through is the grant the
// manager acts through (see Grant).
func (s *Services) SetGrant(ctx context.Context, id uuid.UUID, perms []string, through uuid.UUID) (queries.Grant, error) {
	var g queries.Grant
	err := s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
		if err := stillGives(ctx, q, through, perms); err != nil {
			return err
		}
		var err error
		if g, err = q.SetGrantPermissions(ctx, queries.SetGrantPermissionsParams{ID: id, Permissions: perms}); errors.Is(err, pgx.ErrNoRows) {
			return errGrantEnded
		} else if err != nil {
			return err
		}
		return limitMadeThrough(ctx, q, g)
	})
	return g, err
}

var errGrantEnded = &Error{Code: Conflict, Key: "grant_ended", Message: "The grant was declined or revoked already"}

// Revoke ends a grant, the console sessions its grantee opened through it
// and the grants the grantee made through it, in one transaction; streams
// opened through it end on their next look (see web's stream loops).
func (s *Services) Revoke(ctx context.Context, id uuid.UUID) (queries.Grant, error) {
	var g queries.Grant
	err := s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
		var err error
		if g, err = revoke(ctx, q, id); err != nil {
			return err
		}
		return limitMadeThrough(ctx, q, g)
	})
	if err == nil {
		s.Log.Info("grant revoked", "grant_id", id, "service_id", g.ServiceID)
	}
	return g, err
}

func revoke(ctx context.Context, q *queries.Queries, id uuid.UUID) (queries.Grant, error) {
	g, err := q.RevokeGrant(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, errGrantEnded
	}
	if err != nil {
		return g, err
	}
	_, err = q.DeleteGrantConsoleSessions(ctx, uuid.NullUUID{UUID: id, Valid: true})
	return g, err
}

// limitMadeThrough keeps the grants that g's grantee made on the service
// within what g gives now: narrowed to it, or revoked with it, and so on
// down the chain, so that no grant outlives or outgrows the one it was made
// through. A grantee who is also a member of the service's team made their
// grants with their role, which g does not change.
func limitMadeThrough(ctx context.Context, q *queries.Queries, g queries.Grant) error {
	p, err := q.GetPersonByEmail(ctx, g.Email)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // nobody with the email ever had a key to grant with
	}
	if err != nil {
		return err
	}
	svc, err := q.GetService(ctx, g.ServiceID)
	if err != nil {
		return err
	}
	if _, err := q.GetTeamMember(ctx, queries.GetTeamMemberParams{TeamID: svc.TeamID, PersonID: p.ID}); err == nil {
		return nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	made, err := q.ListGrantsMadeBy(ctx, queries.ListGrantsMadeByParams{ServiceID: g.ServiceID, GrantedBy: uuid.NullUUID{UUID: p.ID, Valid: true}})
	if err != nil {
		return err
	}
	for _, m := range made {
		var keep []string
		if g.Status == "accepted" {
			for _, perm := range m.Permissions {
				if Holds(g.Permissions, perm) {
					keep = append(keep, perm)
				}
			}
		}
		switch {
		case len(keep) == 0:
			m, err = revoke(ctx, q, m.ID)
		case len(keep) < len(m.Permissions):
			m, err = q.SetGrantPermissions(ctx, queries.SetGrantPermissionsParams{ID: m.ID, Permissions: keep})
		default:
			continue
		}
		if err != nil {
			return err
		}
		if err := limitMadeThrough(ctx, q, m); err != nil {
			return err
		}
	}
	return nil
}
