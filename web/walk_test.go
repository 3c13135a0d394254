package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/apikey"
	"github.com/hostfleet/provisiond/web/contract"
)

// TestEveryRouteRefusesBadInputWithinTheContract walks every operation of
// the description and sends it bad input: wrong and missing ids, wrong
// types and NUL in every body field, bodies that are not objects or not
// UTF-8, huge numbers and strings, and bad query values. No answer may be
// a 5xx, and every answer must be one the description allows (the
// contract client fails the test otherwise).
func TestEveryRouteRefusesBadInputWithinTheContract(t *testing.T) {
	e := newEnv(t)
	// Keys whose rate limit the walk does not reach.
	e.key = e.newKey(apikey.Spec{TeamID: e.team.ID, RateLimit: 1 << 30})
	e.platform = e.newKey(apikey.Spec{TeamID: e.newTeam("walker").ID, Platform: true, RateLimit: 1 << 30})
	doc, err := contract.Load(context.Background(), web.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	svc := e.newService(e.team.ID)
	ids := map[string][]string{
		"id":       {svc.ID.String(), uuid.NewString(), "not-an-id", "%00", "%FF"},
		"teamId":   {e.team.ID.String(), uuid.NewString(), "x"},
		"ruleId":   {uuid.NewString(), "x"},
		"backupId": {"vzdump-qemu-100-x.vma.zst", "%00"},
		"token":    {"forged", "%FF"},
	}
	answers, cases := map[int]int{}, 0
	send := func(method, path, body string) {
		cases++
		for _, key := range []string{e.key, e.platform} {
			req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("x-api-key", key)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := e.client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			res.Body.Close()
			answers[res.StatusCode]++
			if res.StatusCode >= 500 {
				t.Errorf("%s %s %.120q: %d", method, path, body, res.StatusCode)
			}
		}
	}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		for method, op := range item.Operations() {
			if streams(op) || path == "/api/console/{token}" {
				continue // a stream answers once its id is right: left to the tests that read it
			}
			for i, p := range paths(path, ids) {
				send(method, p, "")
				for _, q := range queryParams(op, item) {
					for _, v := range []string{"x", "-1", "0", "99999999999999999999", "%00", "%FF", strings.Repeat("9", 400)} {
						send(method, p+"?"+q+"="+v, "")
					}
				}
				// Bad bodies go to the path with its right ids and to the one
				// with an unknown first id: a malformed id is refused before
				// any body is read, whatever the body.
				if op.RequestBody == nil || i > 1 {
					continue
				}
				for _, b := range badBodies(op) {
					send(method, p, b)
				}
			}
		}
	}
	t.Logf("%d cases (each with a team key and a platform key), answers by status: %v", cases, answers)
}

// streams reports whether the operation answers a server-sent event stream.
func streams(op *openapi3.Operation) bool {
	for _, r := range op.Responses.Map() {
		if r.Value != nil && r.Value.Content.Get("text/event-stream") != nil {
			return true
		}
	}
	return false
}

// paths fills the path's parameters with each of their test values in
// turn, the others left at their first.
func paths(path string, ids map[string][]string) []string {
	out := []string{}
	var names []string
	for name := range ids {
		if strings.Contains(path, "{"+name+"}") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	fill := func(vary string, v string) string {
		p := path
		for _, n := range names {
			val := ids[n][0]
			if n == vary {
				val = v
			}
			p = strings.ReplaceAll(p, "{"+n+"}", val)
		}
		return p
	}
	if len(names) == 0 {
		return []string{path}
	}
	for _, n := range names {
		for _, v := range ids[n] {
			if p := fill(n, v); !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// queryParams names the operation's query parameters.
func queryParams(op *openapi3.Operation, item *openapi3.PathItem) []string {
	var out []string
	for _, ps := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, p := range ps {
			if p.Value != nil && p.Value.In == "query" {
				out = append(out, url.QueryEscape(p.Value.Name))
			}
		}
	}
	return out
}

// badBodies are bodies no handler may answer with a 5xx: of the wrong
// shape, or with each property of the operation's schema given a wrong
// type, a NUL, a huge number or a huge string.
func badBodies(op *openapi3.Operation) []string {
	out := []string{`{}`, `[]`, `null`, `"x"`, `{"a":`, "{\"name\":\"\xff\xfe\"}", `{"name":"\u0000"}`,
		`{"a":1e999}`, strings.Repeat(`[`, 10000), `{"x":"` + strings.Repeat("x", 2<<20) + `"}`}
	props := map[string]bool{}
	var collect func(s *openapi3.SchemaRef)
	collect = func(s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil {
			return
		}
		for name := range s.Value.Properties {
			props[name] = true
		}
		for _, group := range []openapi3.SchemaRefs{s.Value.AllOf, s.Value.AnyOf, s.Value.OneOf} {
			for _, sub := range group {
				collect(sub)
			}
		}
	}
	if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil {
		collect(mt.Schema)
	}
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, v := range []string{`"x"`, `123`, `true`, `{}`, `[]`, `null`, `"\u0000"`, `-99999999999999999999`, `1.5`,
			fmt.Sprintf("%q", strings.Repeat("ü", 5000))} {
			out = append(out, fmt.Sprintf(`{%q:%s}`, n, v))
		}
	}
	return out
}
