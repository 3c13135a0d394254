package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hostfleet/provisiond/queries"
)

// errLastOwner refuses what would leave a team without an owner.
var errLastOwner = &Error{Code: Conflict, Key: "last_owner", Message: "A team keeps at least one owner; make another member owner first"}

// RemoveMember takes the person out of the team and revokes the keys they
// held in it, in one transaction; the team's last owner stays.
func (s *Services) RemoveMember(ctx context.Context, team, person uuid.UUID) error {
	return s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
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
// is refused.
func (s *Services) Grant(ctx context.Context, svc queries.Service, email string, perms []string, by uuid.UUID) (queries.Grant, error) {
	g, err := s.Queries.CreateGrant(ctx, queries.CreateGrantParams{ServiceID: svc.ID, Email: email, Permissions: perms,
		GrantedBy: uuid.NullUUID{UUID: by, Valid: by != uuid.Nil}})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.ConstraintName == "grants_one_open" {
		return g, &Error{Code: Conflict, Key: "grant_exists", Message: email + " has a pending or accepted grant on this service already; change it instead"}
	}
	if err != nil {
		return g, fmt.Errorf("record grant: %w", err)
	}
	s.Log.Info("service shared", "service_id", svc.ID, "provider", svc.Provider, "grant_id", g.ID, "permissions", perms)
	return g, nil
}

// Revoke ends a grant and the console sessions its grantee opened through
// it, in one transaction; streams opened through it end on their next
// look (see web's stream loops).
func (s *Services) Revoke(ctx context.Context, id uuid.UUID) (queries.Grant, error) {
	var g queries.Grant
	err := s.inTx(ctx, func(_ pgx.Tx, q *queries.Queries, _ func(queries.Job)) error {
		var err error
		if g, err = q.RevokeGrant(ctx, id); errors.Is(err, pgx.ErrNoRows) {
			return &Error{Code: Conflict, Key: "grant_ended", Message: "The grant was declined or revoked already"}
		} else if err != nil {
			return err
		}
		_, err = q.DeleteGrantConsoleSessions(ctx, uuid.NullUUID{UUID: id, Valid: true})
		return err
	})
	if err == nil {
		s.Log.Info("grant revoked", "grant_id", id, "service_id", g.ServiceID)
	}
	return g, err
}
