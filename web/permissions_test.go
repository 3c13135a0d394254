package web_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/web/apikey"
)

// grantee makes a person of another team who the owner invites, by email,
// to the service with perms; the person accepts. It returns the person's
// key and the grant's id.
func (e *env) grantee(t *testing.T, owner, service, email string, perms string) (string, string) {
	t.Helper()
	res := e.do("POST", "/api/permissions", owner, `{"resourceId":"`+service+`","email":"`+email+`","permissions":`+perms+`}`)
	res.check(t, 201, "")
	grant := res.body["permission"].(map[string]any)["id"].(string)
	other := e.newTeam("team-of-" + email)
	key := e.newKey(apikey.Spec{TeamID: other.ID, PersonID: e.member(t, other, email, "owner")})
	e.do("GET", "/api/permissions/me?status=pending", key, "").check(t, 200, "")
	e.do("POST", "/api/permissions/accept", key, `{"id":"`+grant+`"}`).check(t, 200, "")
	return key, grant
}

func TestAnInvitationToAnUnknownEmailWaitsForItsPerson(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID).ID.String()
	res := e.do("POST", "/api/permissions", e.key, `{"resourceId":"`+svc+`","email":"Newcomer@Example.test","permissions":["view"]}`)
	res.check(t, 201, "")
	g := res.body["permission"].(map[string]any)
	if g["status"] != "pending" || g["email"] != "newcomer@example.test" {
		t.Fatalf("grant %v, want pending for the lower-cased email", g)
	}
	// The person comes later, with a key of their own team.
	other := e.newTeam("newcomers")
	key := e.newKey(apikey.Spec{TeamID: other.ID, PersonID: e.member(t, other, "newcomer@example.test", "owner")})
	e.do("GET", "/api/services/"+svc, key, "").check(t, 404, "Service not found") // not before accepting
	me := e.do("GET", "/api/me", key, "")
	me.check(t, 200, "")
	if shared := me.body["me"].(map[string]any)["shared"].([]any); len(shared) != 1 {
		t.Fatalf("me shows %d shared services, want the invitation", len(shared))
	}
	e.do("POST", "/api/permissions/accept", key, `{"id":"`+g["id"].(string)+`"}`).check(t, 200, "")
	e.do("GET", "/api/services/"+svc, key, "").check(t, 200, "")
	e.do("POST", "/api/services/"+svc+"/action", key, `{"action":"start"}`).check(t, 403, "This needs the start permission on the service")
}

func TestAGrantNeverExceedsItsGranter(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID).ID.String()
	manager, _ := e.grantee(t, e.key, svc, "manager@example.test", `["view","manage_permissions"]`)
	tests := []struct {
		name, perms string
		status      int
	}{
		{"within what the granter holds", `["view"]`, 201},
		{"a permission the granter lacks", `["view","start"]`, 400},
		{"an unknown permission", `["root"]`, 400},
		{"none at all", `[]`, 400},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := "friend" + string(rune('a'+i)) + "@example.test"
			e.do("POST", "/api/permissions", manager, `{"resourceId":"`+svc+`","email":"`+email+`","permissions":`+tt.perms+`}`).check(t, tt.status, "")
		})
	}
}

func TestARevokedGrantEndsAccessJobsAndStreamsAtOnce(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID).ID.String()
	key, grant := e.grantee(t, e.key, svc, "operator@example.test", `["view","start","stop","restart"]`)
	res := e.do("POST", "/api/services/"+svc+"/action", key, `{"action":"restart"}`)
	res.check(t, 202, "")
	job := res.body["job"].(map[string]any)["id"].(string)
	row, err := e.q.GetJob(context.Background(), uuid.MustParse(job))
	if err != nil {
		t.Fatal(err)
	}
	if !row.PersonID.Valid || row.GrantID.UUID.String() != grant {
		t.Errorf("the job records person %v and grant %v, want the grantee and grant %s", row.PersonID, row.GrantID, grant)
	}
	// The grantee follows the job (which no worker runs: it stays queued).
	req, _ := http.NewRequest("GET", e.url+"/api/jobs/"+job+"/events", nil)
	req.Header.Set("x-api-key", key)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("stream: %s", stream.Status)
	}
	e.do("DELETE", "/api/permissions/"+grant, e.key, "").check(t, 200, "")
	ended := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "access revoked") {
				ended <- true
				return
			}
		}
		ended <- false
	}()
	select {
	case ok := <-ended:
		if !ok {
			t.Error("the stream ended without saying the access was revoked")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream went on after its grant was revoked")
	}
	e.do("GET", "/api/services/"+svc, key, "").check(t, 404, "Service not found")
	e.do("POST", "/api/services/"+svc+"/action", key, `{"action":"start"}`).check(t, 404, "Service not found")
}

func TestMembershipKeepsAnOwner(t *testing.T) {
	e := newEnv(t)
	team := e.team.ID.String()
	owner := e.newKey(apikey.Spec{TeamID: e.team.ID, PersonID: e.member(t, e.team, "owner@example.test", "owner")})
	adminID := e.member(t, e.team, "admin@example.test", "admin")
	admin := e.newKey(apikey.Spec{TeamID: e.team.ID, PersonID: adminID})
	res := e.do("POST", "/api/teams/"+team+"/members", admin, `{"email":"new@example.test"}`)
	res.check(t, 201, "")
	newID := res.body["member"].(map[string]any)["personId"].(string)
	e.do("PATCH", "/api/teams/"+team+"/members/"+newID, admin, `{"role":"owner"}`).check(t, 403, "Only the team's owners may give or take the owner role")
	// Adding a member again changes nothing, least of all an owner's role.
	e.do("POST", "/api/teams/"+team+"/members", admin, `{"email":"owner@example.test","role":"member"}`).check(t, 409, "owner@example.test is a member of the team already")
	e.do("POST", "/api/teams/"+team+"/leave", owner, "").check(t, 409, "A team keeps at least one owner; make another member owner first")
	e.do("PATCH", "/api/teams/"+team+"/members/"+newID, owner, `{"role":"owner"}`).check(t, 200, "")
	e.do("POST", "/api/teams/"+team+"/leave", owner, "").check(t, 200, "")
	gone := func(key string) func() bool {
		return func() bool { return e.do("GET", "/api/me", key, "").status == http.StatusUnauthorized }
	}
	jobtest.Eventually(t, 2*time.Second, "a leaver's keys end with the membership", gone(owner))
	e.do("DELETE", "/api/teams/"+team+"/members/"+adminID.String(), e.key, "").check(t, 200, "")
	jobtest.Eventually(t, 2*time.Second, "a removed member's keys end with the membership", gone(admin))
	list := e.do("GET", "/api/teams/"+team+"/members", e.key, "")
	list.check(t, 200, "")
	if members := list.body["members"].([]any); len(members) != 1 {
		t.Errorf("%d members left, want the new owner alone", len(members))
	}
}

func TestAGrantMadeThroughAGrantShrinksAndEndsWithIt(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID).ID.String()
	mallory, hers := e.grantee(t, e.key, svc, "mallory@example.test", `["view","start","manage_permissions"]`)
	bob, his := e.grantee(t, mallory, svc, "bob@example.test", `["view","start","manage_permissions"]`)
	list := e.do("GET", "/api/permissions?resourceId="+svc, e.key, "")
	list.check(t, 200, "")
	for _, g := range list.body["permissions"].([]any) {
		if g := g.(map[string]any); g["id"] == his && g["grantedBy"] != "mallory@example.test" {
			t.Errorf("bob's grant shows grantedBy %v, want mallory", g["grantedBy"])
		}
	}
	// Bob may not manage the grant he was made through.
	e.do("PATCH", "/api/permissions/"+hers, bob, `{"permissions":["view","start","manage_permissions"]}`).check(t, 403, "Through a grant you manage only the grants you made")
	// Narrowing mallory's grant narrows bob's.
	e.do("PATCH", "/api/permissions/"+hers, e.key, `{"permissions":["view","manage_permissions"]}`).check(t, 200, "")
	e.do("POST", "/api/services/"+svc+"/action", bob, `{"action":"start"}`).check(t, 403, "This needs the start permission on the service")
	// Revoking it revokes his, and he cannot share it back.
	e.do("DELETE", "/api/permissions/"+hers, e.key, "").check(t, 200, "")
	e.do("GET", "/api/services/"+svc, bob, "").check(t, 404, "Service not found")
	e.do("POST", "/api/permissions", bob, `{"resourceId":"`+svc+`","email":"mallory@example.test","permissions":["view"]}`).check(t, 404, "Service not found")
}

func TestTwoOwnersDemotedAtOnceLeaveOne(t *testing.T) {
	e := newEnv(t)
	team := e.team.ID.String()
	var ids []string
	for _, email := range []string{"one@example.test", "two@example.test"} {
		ids = append(ids, e.member(t, e.team, email, "owner").String())
	}
	statuses := make(chan int, len(ids))
	for _, id := range ids {
		go func() {
			req, _ := http.NewRequest("PATCH", e.url+"/api/teams/"+team+"/members/"+id, strings.NewReader(`{"role":"admin"}`))
			req.Header.Set("x-api-key", e.key)
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		}()
	}
	got := []int{<-statuses, <-statuses}
	if !(got[0] == 200 && got[1] == 409 || got[0] == 409 && got[1] == 200) {
		t.Errorf("two demotions at once answered %v, want one 200 and one 409", got)
	}
}

func TestStreamsEndWhenTheirAccessNarrowsOrItsMemberGoes(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID).ID.String()
	operator, grant := e.grantee(t, e.key, svc, "narrowed@example.test", `["view","stop"]`)
	memberKey := e.newKey(apikey.Spec{TeamID: e.team.ID, PersonID: e.member(t, e.team, "leaver@example.test", "member")})
	res := e.do("POST", "/api/services/"+svc+"/action", e.key, `{"action":"stop"}`)
	res.check(t, 202, "")
	job := res.body["job"].(map[string]any)["id"].(string)
	streams := map[string]string{"the grantee's": operator, "the member's": memberKey}
	ended := map[string]chan bool{}
	for name, key := range streams {
		req, _ := http.NewRequest("GET", e.url+"/api/jobs/"+job+"/events", nil)
		req.Header.Set("x-api-key", key)
		stream, err := http.DefaultClient.Do(req)
		if err != nil || stream.StatusCode != 200 {
			t.Fatalf("%s stream: %v %v", name, stream, err)
		}
		t.Cleanup(func() { stream.Body.Close() })
		ended[name] = make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stream.Body)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "access revoked") {
					ended[name] <- true
					return
				}
			}
		}()
	}
	e.do("PATCH", "/api/permissions/"+grant, e.key, `{"permissions":["stop"]}`).check(t, 200, "")
	e.do("DELETE", "/api/teams/"+e.team.ID.String()+"/members/"+e.personOf(t, "leaver@example.test"), e.key, "").check(t, 200, "")
	for name, ch := range ended {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Errorf("%s stream went on after its access ended", name)
		}
	}
}

func (e *env) personOf(t *testing.T, email string) string {
	t.Helper()
	p, err := e.q.GetPersonByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID.String()
}

// TestGrantsMadeWhileTheirGrantIsRevokedDoNotSurviveIt races grants made
// through a grant with the grant's revocation: none may be left open.
func TestGrantsMadeWhileTheirGrantIsRevokedDoNotSurviveIt(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID).ID.String()
	mallory, hers := e.grantee(t, e.key, svc, "mallory@example.test", `["view","manage_permissions"]`)
	bob, _ := e.grantee(t, mallory, svc, "bob@example.test", `["view","manage_permissions"]`)
	done := make(chan struct{})
	for i := range 20 {
		go func() {
			defer func() { done <- struct{}{} }()
			body := fmt.Sprintf(`{"resourceId":"%s","email":"race%d@example.test","permissions":["view"]}`, svc, i)
			req, _ := http.NewRequest("POST", e.url+"/api/permissions", strings.NewReader(body))
			req.Header.Set("x-api-key", bob)
			req.Header.Set("Content-Type", "application/json")
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}()
	}
	e.do("DELETE", "/api/permissions/"+hers, e.key, "").check(t, 200, "")
	for range 20 {
		<-done
	}
	list := e.do("GET", "/api/permissions?resourceId="+svc, e.key, "")
	list.check(t, 200, "")
	for _, g := range list.body["permissions"].([]any) {
		if g := g.(map[string]any); g["grantedBy"] == "bob@example.test" && (g["status"] == "pending" || g["status"] == "accepted") {
			t.Errorf("grant %v to %v made through a revoked grant is still %v", g["id"], g["email"], g["status"])
		}
	}
}
