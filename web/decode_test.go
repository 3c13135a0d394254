package web

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hostfleet/provisiond/jobs"
)

// FuzzDecodeAction checks that no request body can make the action decoder
// panic, answer with anything but a 400, or let an unknown action through.
func FuzzDecodeAction(f *testing.F) {
	for _, seed := range []string{
		`{"action":"restart"}`, `{"action":5}`, `{"action":`, `[]`, `null`, ``, `{"action":"x"}{}`,
		`{"action":"start","extra":{"deep":[1,2,3]}}`, "\xff\xfe", `{"action":"stop\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAction(body)
		if err != nil {
			if err.Status != http.StatusBadRequest || err.Message == "" {
				t.Fatalf("decodeAction(%q) = %d %q, want a 400 with a message", body, err.Status, err.Message)
			}
			return
		}
		if !slices.Contains(jobs.PowerActions, req.Action) {
			t.Fatalf("decodeAction(%q) accepted action %q", body, req.Action)
		}
	})
}

// FuzzDecodeCreateService does the same for service registration.
func FuzzDecodeCreateService(f *testing.F) {
	f.Add([]byte(`{"name":"a","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":1},"providerRef":{"node":"pve1","vmid":100}}`))
	f.Add([]byte(`{"plan":{"cores":"x"}}`))
	f.Add([]byte(`{"billingPeriodEnd":"2026-13-40T99:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createServiceRequest
		if err := decodeJSON(body, &req); err != nil {
			if err.Status != http.StatusBadRequest {
				t.Fatalf("decodeJSON(%q) status %d", body, err.Status)
			}
			return
		}
		_, errs := req.validate()
		if len(errs) == 0 && (req.Plan == nil || !slices.Contains(supportedProviders, req.Provider)) {
			t.Fatalf("validate accepted %q", body)
		}
	})
}

func TestCheckJSONTextNamesTheField(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"plain text passes", `{"name":"web","plan":{"environment":{"A":"b"}},"tags":["x"]}`, nil},
		{"an escaped backslash before u0000 is no NUL", `{"name":"a\\u0000"}`, nil},
		{"NUL in a top-level value", `{"name":"we\u0000b"}`, []string{"name must not contain NUL characters"}},
		{"NUL in a nested value", `{"plan":{"environment":{"SERVER_JARFILE":"x\u0000.jar"}}}`,
			[]string{"plan.environment.SERVER_JARFILE must not contain NUL characters"}},
		{"NUL in an array element", `{"ips":["1.2.3.4","\u0000"]}`, []string{"ips.1 must not contain NUL characters"}},
		{"NUL in a key", `{"plan":{"a\u0000b":1}}`, []string{"plan: a field name must not contain NUL characters"}},
		{"NUL after an array of objects", `{"rules":[{"a":1},{"b":[2]}],"note":"\u0000"}`, []string{"note must not contain NUL characters"}},
		{"NUL in a bare string body", `"\u0000"`, []string{"the body must not contain NUL characters"}},
		{"bytes that are not UTF-8", "{\"name\":\"\xff\"}", []string{"the request body must be valid UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkJSONText([]byte(tt.body)); !slices.Equal(got, tt.want) {
				t.Errorf("checkJSONText(%s) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

// FuzzCheckJSONText checks the text check every API body goes through: it
// never panics, and a body it lets through holds no NUL in any string and
// is valid UTF-8, as PostgreSQL needs.
func FuzzCheckJSONText(f *testing.F) {
	for _, seed := range []string{`{"a":"b"}`, `{"a":"\u0000"}`, `{"a\u0000":1}`, `[{"x":["\u0000"]}]`, `{"a":"\\u0000"}`,
		"{\"a\":\"\xff\"}", `{"a":{"b":{"c":[1,2,{"d":"\u0000"}]}}}`, `"\u0000"`, `{`, `}}}`, `[[[[`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(checkJSONText(body)) > 0 {
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("checkJSONText(%q) let bytes that are not UTF-8 through", body)
		}
		var v any
		if json.Unmarshal(body, &v) != nil {
			return
		}
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case string:
				if strings.ContainsRune(v, 0) {
					t.Fatalf("checkJSONText(%q) let a NUL through", body)
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			case map[string]any:
				for k, e := range v {
					walk(k)
					walk(e)
				}
			}
		}
		walk(v)
	})
}
