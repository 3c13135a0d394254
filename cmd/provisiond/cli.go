package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/apikey"
)

func keysCommand(ctx context.Context, a *app, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: provisiond keys create|list|revoke ...")
	}
	switch args[0] {
	case "create":
		return createKey(ctx, a.q, args[1:], out)
	case "list":
		return listKeys(ctx, a.q, args[1:], out)
	case "revoke":
		if len(args) != 2 {
			return usageError("usage: provisiond keys revoke ID|PREFIX")
		}
		n, err := a.q.RevokeAPIKey(ctx, args[1])
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no active key has id or prefix %q", args[1])
		}
		fmt.Fprintf(out, "revoked %d key(s)\n", n)
		return nil
	}
	return usageError(fmt.Sprintf("unknown keys command %q", args[0]))
}

func createKey(ctx context.Context, q *queries.Queries, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	fs.SetOutput(out)
	team := fs.String("team", "", "team name or id (required, but for --platform: default the team \"platform\")")
	platform := fs.Bool("platform", false, "a platform key: registers and provisions services for any team, renews them, suspends them for payment")
	name := fs.String("name", "", "a label for the key")
	scopes := fs.String("scopes", "", "comma-separated scopes; empty means full access ("+strings.Join(apikey.Scopes, ", ")+")")
	expires := fs.String("expires", "", "expiry time, RFC 3339")
	ips := fs.String("ip", "", "comma-separated CIDRs the key may be used from")
	rate := fs.Int("rate-limit", 0, "requests per minute (0: the server's API_RATE_LIMIT)")
	user := fs.String("user", "", "the team member (email) the key belongs to: it acts with their role; made a member when not one yet")
	role := fs.String("role", "", "with --user: the member's role, owner, admin or member (default: owner for a team's first member, member otherwise; a member keeps theirs)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *role != "" && *user == "" {
		return usageError("keys create: --role needs --user")
	}
	if *user != "" && *platform {
		return usageError("keys create: a platform key belongs to no person; leave --user out")
	}
	var t queries.Team
	var err error
	switch {
	case *team != "":
		t, err = findTeam(ctx, q, *team)
	case *platform:
		t, err = ensureTeam(ctx, q, platformTeam)
	default:
		return usageError("keys create: --team is required")
	}
	if err != nil {
		return err
	}
	spec := apikey.Spec{TeamID: t.ID, Name: *name, Scopes: splitList(*scopes), RateLimit: *rate, Platform: *platform}
	if *user != "" {
		m, err := ensureMember(ctx, q, t, *user, *role)
		if err != nil {
			return err
		}
		spec.PersonID = m.PersonID
	}
	if *expires != "" {
		at, err := time.Parse(time.RFC3339, *expires)
		if err != nil {
			return usageError("keys create: --expires must be RFC 3339, e.g. 2027-01-01T00:00:00Z")
		}
		spec.ExpiresAt = &at
	}
	for _, s := range splitList(*ips) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return usageError(fmt.Sprintf("keys create: --ip: %q is not a CIDR or address", s))
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		spec.IPs = append(spec.IPs, p.Masked())
	}
	key, row, err := apikey.Create(ctx, q, spec)
	if err != nil {
		return err
	}
	kind := "key"
	if row.Platform {
		kind = "platform key"
	}
	fmt.Fprintf(out, "%s\n\n%s %s for team %s; it is shown only this once (only its hash is kept)\n", key, kind, row.ID, t.Name)
	return nil
}

// ensureMember makes the person with the email a member of the team (with
// role, or the default: owner for the team's first member, member
// otherwise) and returns the membership; a member keeps their role unless
// one is given.
func ensureMember(ctx context.Context, q *queries.Queries, t queries.Team, email, role string) (queries.TeamMember, error) {
	if !web.ValidEmail(email) {
		return queries.TeamMember{}, usageError(fmt.Sprintf("%q is not an email address", email))
	}
	if role != "" && !slices.Contains(service.Roles, role) {
		return queries.TeamMember{}, usageError("--role must be one of: " + strings.Join(service.Roles, ", "))
	}
	p, err := q.EnsurePerson(ctx, email)
	if err != nil {
		return queries.TeamMember{}, err
	}
	m, err := q.GetTeamMember(ctx, queries.GetTeamMemberParams{TeamID: t.ID, PersonID: p.ID})
	switch {
	case err == nil && role == "":
		return m, nil
	case err == nil:
		m, err = q.SetTeamMemberRole(ctx, queries.SetTeamMemberRoleParams{TeamID: t.ID, PersonID: p.ID, Role: role})
		if errors.Is(err, pgx.ErrNoRows) {
			return m, usageError(fmt.Sprintf("%s is the team's last owner: make another member owner first", email))
		}
		return m, err
	}
	if role == "" {
		role = "member"
		if members, err := q.ListTeamMembers(ctx, t.ID); err == nil && len(members) == 0 {
			role = "owner"
		}
	}
	return q.AddTeamMember(ctx, queries.AddTeamMemberParams{TeamID: t.ID, PersonID: p.ID, Role: role})
}

func listKeys(ctx context.Context, q *queries.Queries, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	fs.SetOutput(out)
	team := fs.String("team", "", "only this team's keys")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	var teamID uuid.NullUUID
	if *team != "" {
		t, err := findTeam(ctx, q, *team)
		if err != nil {
			return err
		}
		teamID = uuid.NullUUID{UUID: t.ID, Valid: true}
	}
	rows, err := q.ListAPIKeys(ctx, teamID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tTEAM\tKIND\tNAME\tSCOPES\tEXPIRES\tSTATE")
	for _, k := range rows {
		state := "active"
		switch {
		case k.RevokedAt != nil:
			state = "revoked"
		case k.ExpiresAt != nil && k.ExpiresAt.Before(time.Now()):
			state = "expired"
		}
		scopes := strings.Join(k.Scopes, ",")
		if scopes == "" {
			scopes = "(all)"
		}
		expires := "-"
		if k.ExpiresAt != nil {
			expires = k.ExpiresAt.UTC().Format(time.RFC3339)
		}
		kind := "team"
		if k.Platform {
			kind = "platform"
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.TeamName, kind, k.Name, scopes, expires, state)
	}
	return tw.Flush()
}

func teamsCommand(ctx context.Context, a *app, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError("usage: provisiond teams create NAME | teams list")
	}
	switch args[0] {
	case "create":
		if len(args) != 2 || strings.TrimSpace(args[1]) == "" {
			return usageError("usage: provisiond teams create NAME")
		}
		t, err := a.q.CreateTeam(ctx, strings.TrimSpace(args[1]))
		if err != nil {
			return fmt.Errorf("create team: %w", err)
		}
		fmt.Fprintf(out, "team %s created: %s\n", t.Name, t.ID)
		return nil
	case "list":
		teams, err := a.q.ListTeams(ctx)
		if err != nil {
			return err
		}
		for _, t := range teams {
			fmt.Fprintf(out, "%s\t%s\n", t.ID, t.Name)
		}
		return nil
	}
	return usageError(fmt.Sprintf("unknown teams command %q", args[0]))
}

// findTeam looks a team up by id or by name.
func findTeam(ctx context.Context, q *queries.Queries, ref string) (queries.Team, error) {
	var t queries.Team
	var err error
	if id, perr := uuid.Parse(ref); perr == nil {
		t, err = q.GetTeam(ctx, id)
	} else {
		t, err = q.GetTeamByName(ctx, ref)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("no team %q (create it with: provisiond teams create NAME)", ref)
	}
	return t, err
}

// platformTeam is the home team of platform keys made without --team.
const platformTeam = "platform"

// ensureTeam returns the team of that name, creating it when missing.
func ensureTeam(ctx context.Context, q *queries.Queries, name string) (queries.Team, error) {
	t, err := q.GetTeamByName(ctx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		t, err = q.CreateTeam(ctx, name)
	}
	if err != nil {
		return t, fmt.Errorf("team %s: %w", name, err)
	}
	return t, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// reconcileCommand runs one reconciliation round (see jobs.Reconciler) and
// prints what it found.
func reconcileCommand(ctx context.Context, a *app, out io.Writer) error {
	providers, err := a.registry()
	if err != nil {
		return err
	}
	r := a.reconciler(providers)
	if len(jobs.Capable[jobs.Verifier](providers)) == 0 {
		return errors.New("neither PROXMOX_TOKEN_SECRET nor PTERODACTYL_URL is set: nothing to reconcile")
	}
	res, err := r.Round(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "services verified\t%d\n", res.Services)
	fmt.Fprintf(tw, "left for the next round (a job changes them)\t%d\n", res.Busy)
	for _, kind := range jobs.DriftKinds {
		fmt.Fprintf(tw, "drift: %s\t%d\n", kind, res.Drifted[kind])
	}
	for _, name := range res.Destroyed {
		fmt.Fprintf(tw, "deleted orphan\t%s\n", name)
	}
	return tw.Flush()
}
