package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web/apikey"
)

func TestKeysCreateForAPersonMakesThemAMember(t *testing.T) {
	ctx := context.Background()
	pool, _ := jobtest.DB(t)
	q := queries.New(pool)
	team, err := q.CreateTeam(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantRole string
		wantErr  string
	}{
		{"the team's first member is its owner", []string{"--team", "acme", "--user", "ada@example.test"}, "owner", ""},
		{"a later one a member", []string{"--team", "acme", "--user", "bob@example.test"}, "member", ""},
		{"a member keeps their role", []string{"--team", "acme", "--user", "ada@example.test"}, "owner", ""},
		{"a role given is the member's", []string{"--team", "acme", "--user", "bob@example.test", "--role", "admin"}, "admin", ""},
		{"the last owner keeps the role", []string{"--team", "acme", "--user", "ada@example.test", "--role", "member"}, "", "the team's last owner"},
		{"an unknown role is refused", []string{"--team", "acme", "--user", "eve@example.test", "--role", "god"}, "", "--role must be one of"},
		{"a bad email is refused", []string{"--team", "acme", "--user", "not an email"}, "", "is not an email address"},
		{"a platform key belongs to nobody", []string{"--platform", "--user", "ada@example.test"}, "", "a platform key belongs to no person"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := createKey(ctx, q, tt.args, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			key := strings.TrimSpace(strings.SplitN(out.String(), "\n", 2)[0])
			row, err := q.GetAPIKeyByHash(ctx, apikey.Hash(key))
			if err != nil {
				t.Fatal(err)
			}
			if row.ApiKey.TeamID != team.ID || row.Role != tt.wantRole || row.Email != tt.args[3] {
				t.Errorf("key of %s in %s as %q, want %s as %s", row.Email, row.ApiKey.TeamID, row.Role, tt.args[3], tt.wantRole)
			}
		})
	}
}
