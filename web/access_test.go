package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v4"

	"github.com/hostfleet/provisiond/monitoring/metrics"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/apikey"
	"github.com/hostfleet/provisiond/web/contract"
)

// accessTable is web/access.yaml.
type accessTable struct {
	Roles  map[string][]string `yaml:"roles"`
	Actors map[string]actor    `yaml:"actors"`
}

type actor struct {
	Team     string   `yaml:"team"`
	Person   bool     `yaml:"person"`
	Role     string   `yaml:"role"`
	Grant    []string `yaml:"grant"`
	Scopes   []string `yaml:"scopes"`
	Platform bool     `yaml:"platform"`
}

func loadAccessTable(t *testing.T) accessTable {
	t.Helper()
	b, err := os.ReadFile("access.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var a accessTable
	if err := yaml.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// operation is one documented operation and the permission it declares.
type operation struct {
	method, path, perm string
}

func documentedOperations(t *testing.T) []operation {
	t.Helper()
	doc, err := contract.Load(context.Background(), web.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var ops []operation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			perm, _ := op.Extensions["x-permission"].(string)
			ops = append(ops, operation{method: method, path: path, perm: perm})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops
}

// TestEveryRouteDeclaresThePermissionTheDescriptionNames holds the routes'
// declared permissions to the description's x-permission, both ways.
func TestEveryRouteDeclaresThePermissionTheDescriptionNames(t *testing.T) {
	routes := web.RoutePermissions(&web.Server{Metrics: metrics.New()})
	documented := map[string]string{}
	for _, op := range documentedOperations(t) {
		if op.perm == "" {
			t.Errorf("%s %s declares no x-permission", op.method, op.path)
			continue
		}
		documented[op.method+" "+op.path] = op.perm
		if op.perm == "none" || op.perm == "key" {
			continue
		}
		if got, ok := routes[op.method+" "+op.path]; !ok {
			t.Errorf("%s %s is documented with %s but no route declares it", op.method, op.path, op.perm)
		} else if got != op.perm {
			t.Errorf("%s %s: the route declares %s, the description %s", op.method, op.path, got, op.perm)
		}
	}
	for pattern, perm := range routes {
		if perm == "" {
			t.Errorf("route %s declares no permission", pattern)
		}
		if _, ok := documented[pattern]; !ok {
			t.Errorf("route %s (%s) is not in the description", pattern, perm)
		}
	}
}

// matrixFixture is what the matrix's requests name: a service of the team
// "acme" with a rule, a job and a pending grant to someone else, a
// bare-metal service of the same team (which the bare-metal routes name,
// and the generic routes that serve bare metal too), and a member.
type matrixFixture struct {
	svc             queries.Service
	bareMetal       queries.Service
	rule, job       uuid.UUID
	grant, memberID uuid.UUID
}

// bareMetalToo are the generic operations that also serve bare metal
// (through the provider registry): the matrix sends them for the
// bare-metal service as well.
var bareMetalToo = map[string]bool{
	"GET /api/services/{id}":            true,
	"POST /api/services/{id}/action":    true,
	"GET /api/services/{id}/status":     true,
	"GET /api/services/{id}/traffic":    true,
	"POST /api/services/{id}/reinstall": true,
	"POST /api/services/{id}/rescue":    true,
	"DELETE /api/services/{id}/rescue":  true,
	"POST /api/services/{id}/console":   true,
}

// TestAccessMatrix sends every documented operation as every actor of
// access.yaml and checks the answer against what the tables say.
func TestAccessMatrix(t *testing.T) {
	table := loadAccessTable(t)
	ops := documentedOperations(t)
	// What ends the actor's access or the setup's goes last.
	last := func(op operation) int {
		switch {
		case strings.HasSuffix(op.path, "/leave"):
			return 2
		case op.method == http.MethodDelete, strings.HasSuffix(op.path, "/cancel"):
			return 1
		}
		return 0
	}
	sort.SliceStable(ops, func(i, j int) bool { return last(ops[i]) < last(ops[j]) })
	for name, a := range table.Actors {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			f, key := matrixSetup(t, e, name, a)
			for _, op := range ops {
				if op.perm == "none" {
					continue
				}
				want := expected(table, a, op)
				got, detail := e.classify(op, f, key)
				if got != want {
					t.Errorf("%s %s as %s: %s (%s), want %s", op.method, op.path, name, got, detail, want)
				}
				if bareMetalToo[op.method+" "+op.path] {
					bm := f
					bm.svc = f.bareMetal
					if got, detail := e.classify(op, bm, key); got != want {
						t.Errorf("%s %s (bare metal) as %s: %s (%s), want %s", op.method, op.path, name, got, detail, want)
					}
				}
			}
		})
	}
	t.Logf("%d operations × %d actors", len(ops), len(table.Actors))
}

func matrixSetup(t *testing.T, e *env, name string, a actor) (matrixFixture, string) {
	t.Helper()
	ctx := context.Background()
	f := matrixFixture{svc: e.newService(e.team.ID), bareMetal: e.newBareMetalService(e.team.ID)}
	rule, err := e.q.CreateAlertRule(ctx, queries.CreateAlertRuleParams{TeamID: e.team.ID, ServiceID: f.svc.ID, MetricType: "cpu",
		Operator: "gt", Threshold: 90, DurationMinutes: 5, Severity: "warning", Enabled: true, MaxRules: 25})
	if err != nil {
		t.Fatal(err)
	}
	f.rule = rule.ID
	res := e.do("POST", "/api/services/"+f.svc.ID.String()+"/backups", e.key, `{}`)
	job, _ := res.body["job"].(map[string]any)
	f.job = uuid.MustParse(job["id"].(string))
	g, err := e.q.CreateGrant(ctx, queries.CreateGrantParams{ServiceID: f.svc.ID, Email: "someone@example.test", Permissions: []string{"view"}})
	if err != nil {
		t.Fatal(err)
	}
	f.grant = g.ID
	f.memberID = e.member(t, e.team, "member-of-acme@example.test", "member")
	team := e.team
	if a.Team == "other" {
		team = e.newTeam("other")
	}
	spec := apikey.Spec{TeamID: team.ID, Scopes: a.Scopes, Platform: a.Platform}
	switch {
	case a.Platform:
		return f, e.platform
	case a.Person:
		spec.PersonID = e.member(t, team, name+"@example.test", a.Role)
	}
	for _, svc := range []uuid.UUID{f.svc.ID, f.bareMetal.ID} {
		if len(a.Grant) == 0 {
			break
		}
		g, err := e.q.CreateGrant(ctx, queries.CreateGrantParams{ServiceID: svc, Email: name + "@example.test", Permissions: a.Grant})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.q.RespondToGrant(ctx, queries.RespondToGrantParams{ID: g.ID, Email: g.Email, Status: "accepted"}); err != nil {
			t.Fatal(err)
		}
	}
	return f, e.newKey(spec)
}

// member makes the person with the email a member of the team.
func (e *env) member(t *testing.T, team queries.Team, email, role string) uuid.UUID {
	t.Helper()
	p, err := e.q.EnsurePerson(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.AddTeamMember(context.Background(), queries.AddTeamMemberParams{TeamID: team.ID, PersonID: p.ID, Role: role}); err != nil {
		t.Fatal(err)
	}
	return p.ID
}

// expected is the answer access.yaml gives the actor for the operation.
func expected(table accessTable, a actor, op operation) string {
	scope := "services"
	if strings.HasPrefix(op.path, "/api/teams") {
		scope = "teams"
	}
	if op.method == http.MethodGet {
		scope += ".read"
	} else {
		scope += ".write"
	}
	perm := op.perm
	switch perm {
	case "action":
		perm = "start" // the matrix starts
	case "job":
		perm = "view"
		if op.method == http.MethodPost {
			perm = "settings"
		}
	}
	platformOnly := perm == "platform" || strings.HasSuffix(op.path, "/renew")
	switch {
	case len(a.Scopes) > 0 && !slices.Contains(a.Scopes, scope):
		return "scope"
	case platformOnly && !a.Platform:
		return "platform"
	case perm == "team_person" && a.Platform:
		return "not_found" // a platform key's home team is not the route's
	case perm == "key", a.Platform && perm != "person":
		return "allowed"
	case perm == "person":
		if !a.Person {
			return "person"
		}
		if op.path != "/api/permissions/me" {
			return "not_found" // the invitation the matrix names is someone else's
		}
		return "allowed"
	case perm == "team" || perm == "team_admin" || perm == "team_person":
		if a.Team != "own" {
			return "not_found"
		}
		if perm == "team_person" && !a.Person {
			return "person"
		}
		if perm == "team_admin" && a.Role == "member" {
			return "role"
		}
		return "allowed"
	}
	held := a.Grant
	if a.Team == "own" {
		held = table.Roles[a.Role]
	}
	switch {
	case len(held) == 0:
		return "not_found"
	case slices.Contains(held, perm), strings.HasPrefix(perm, "backup_") && perm != "backup_schedule" && slices.Contains(held, "backup"):
		return "allowed"
	}
	return "permission"
}

// classify sends the operation with the key and names the answer's kind:
// one of the refusals of access.yaml, or allowed (anything past them).
func (e *env) classify(op operation, f matrixFixture, key string) (string, string) {
	path := op.path
	id := f.svc.ID.String()
	switch {
	case strings.HasPrefix(path, "/api/services/{id}/bare-metal"):
		id = f.bareMetal.ID.String()
	case strings.HasPrefix(path, "/api/jobs/{id}"):
		id = f.job.String()
	case strings.HasPrefix(path, "/api/permissions/{id}"):
		id = f.grant.String()
	}
	path = strings.NewReplacer("{id}", id, "{teamId}", e.team.ID.String(), "{personId}", f.memberID.String(),
		"{ruleId}", f.rule.String(), "{backupId}", "vzdump-qemu-100-2026_01_01-00_00_00.vma.zst").Replace(path)
	switch path {
	case "/api/permissions":
		path += "?resourceId=" + f.svc.ID.String()
	case "/api/services", "/api/jobs":
		path += "?teamId=" + e.team.ID.String()
	}
	body := map[string]string{
		"/api/services/{id}/action":              `{"action":"start"}`,
		"/api/services/{id}/bare-metal/power":    `{"action":"on"}`, // start
		"/api/services/{id}/bare-metal/notes":    `{"notes":"rack 4"}`,
		"/api/permissions":                       `{"resourceId":"` + f.svc.ID.String() + `","email":"new@example.test","permissions":["view"]}`,
		"/api/permissions/accept":                `{"id":"` + f.grant.String() + `"}`,
		"/api/permissions/decline":               `{"id":"` + f.grant.String() + `"}`,
		"/api/teams/{teamId}/members":            `{"email":"new@example.test","role":"member"}`,
		"/api/teams/{teamId}/members/{personId}": `{"role":"admin"}`,
	}[op.path]
	if body == "" && op.method != http.MethodGet && op.method != http.MethodDelete {
		body = `{}`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, op.method, e.url+path, strings.NewReader(body))
	req.Header.Set("x-api-key", key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "error", err.Error()
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return "allowed", "a stream"
	}
	raw, _ := io.ReadAll(res.Body)
	var env struct {
		Error    string `json:"error"`
		ErrorKey string `json:"errorKey"`
	}
	json.Unmarshal(raw, &env)
	detail := res.Status + " " + string(raw)
	switch {
	case res.StatusCode == http.StatusForbidden && env.ErrorKey == "" && env.Error == "Insufficient API key permissions":
		return "scope", detail
	case res.StatusCode == http.StatusForbidden && env.ErrorKey == "platform_key_required":
		return "platform", detail
	case res.StatusCode == http.StatusForbidden && env.ErrorKey == "permission_required":
		return "permission", detail
	case res.StatusCode == http.StatusForbidden && env.ErrorKey == "role_required":
		return "role", detail
	case res.StatusCode == http.StatusForbidden && env.ErrorKey == "person_required":
		return "person", detail
	case res.StatusCode == http.StatusNotFound && slices.Contains([]string{"Service not found", "Team not found", "Job not found", "Permission not found"}, env.Error):
		return "not_found", detail
	case res.StatusCode == http.StatusServiceUnavailable && env.ErrorKey == "provider_unavailable":
		// No Tenantos here: a bare-metal route that reaches the provider
		// has got past every refusal.
		return "allowed", detail
	case res.StatusCode == http.StatusUnauthorized, res.StatusCode >= 500:
		return "broken", detail
	}
	return "allowed", detail
}

// newBareMetalService makes an active Tenantos service of the team holding
// server 7 (no Tenantos is configured: its live reads answer 503).
func (e *env) newBareMetalService(team uuid.UUID) queries.Service {
	e.t.Helper()
	svc, err := e.q.CreateService(context.Background(), queries.CreateServiceParams{
		TeamID: team, Name: "metal", Provider: "tenantos", ProviderRef: []byte(`{"serverId":7}`),
		Plan: []byte(`{"tags":["For Rent"]}`), Status: "active",
	})
	if err != nil {
		e.t.Fatalf("create service: %v", err)
	}
	return svc
}
