package web_test

import (
	"slices"
	"strings"
	"testing"
)

// Bare-metal routes on a server with no Tenantos configured (the live
// answers are the end-to-end tests', against the simulator): every
// request and answer is held to the description by the env's client.

func TestBareMetalRoutesWithoutTenantos(t *testing.T) {
	e := newEnv(t)
	bm := "/api/services/" + e.newBareMetalService(e.team.ID).ID.String()
	vps := "/api/services/" + e.newService(e.team.ID).ID.String()

	t.Run("notes need no Tenantos", func(t *testing.T) {
		res := e.do("GET", bm+"/bare-metal/notes", e.key, "")
		if res.check(t, 200, ""); res.body["notes"] != "" {
			t.Errorf("notes = %v, want none", res.body["notes"])
		}
		res = e.do("PATCH", bm+"/bare-metal/notes", e.key, `{"notes":"rack 4"}`)
		if res.check(t, 200, ""); res.body["notes"] != "rack 4" {
			t.Errorf("notes = %v, want rack 4", res.body["notes"])
		}
		if res := e.do("GET", bm+"/bare-metal/notes", e.key, ""); res.body["notes"] != "rack 4" {
			t.Errorf("notes read back = %v, want rack 4", res.body["notes"])
		}
		e.do("PATCH", bm+"/bare-metal/notes", e.key, `{}`).check(t, 400, "Validation failed")
	})

	t.Run("what reaches Tenantos answers that it is missing", func(t *testing.T) {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/bare-metal", ""},
			{"GET", "/bare-metal/profiles", ""},
			{"POST", "/bare-metal/stats", `{"category":"cpu","mode":"graph","payload":{"predefined":"24h"}}`},
			{"POST", "/bare-metal/console", `{"consoleMode":"web"}`},
			{"POST", "/bare-metal/reinstall", `{"profileId":1,"rootPassword":"correct horse"}`},
			{"POST", "/bare-metal/rescue", `{"message":"locked out"}`},
			{"DELETE", "/bare-metal/rescue", ""},
			{"GET", "/status", ""},
			{"GET", "/traffic?timeframe=week", ""},
			{"POST", "/reinstall", `{"profileId":1}`},
			{"POST", "/rescue", ""},
			{"POST", "/console", ""},
		} {
			res := e.do(c.method, bm+c.path, e.key, c.body)
			if res.status != 503 || res.body["errorKey"] != "provider_unavailable" {
				t.Errorf("%s %s: %d %s, want 503 provider_unavailable", c.method, c.path, res.status, res.raw)
			}
		}
	})

	t.Run("a VPS is not bare metal", func(t *testing.T) {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/bare-metal", ""},
			{"GET", "/bare-metal/notes", ""},
			{"POST", "/bare-metal/power", `{"action":"on"}`},
			{"POST", "/bare-metal/stats", `{"category":"cpu"}`},
		} {
			res := e.do(c.method, vps+c.path, e.key, c.body)
			if res.status != 400 || res.body["errorKey"] != "unsupported_provider" {
				t.Errorf("%s %s: %d %s, want 400 unsupported_provider", c.method, c.path, res.status, res.raw)
			}
		}
	})

	t.Run("power speaks Tenantos' words and queues the power job", func(t *testing.T) {
		res := e.do("POST", bm+"/bare-metal/power", e.key, `{"action":"start"}`)
		res.check(t, 400, "Validation failed")
		if !slices.Contains(validationErrors(res), "action must be one of: cycle, off, on, reset") {
			t.Errorf("validation errors = %v", res.body["validationErrors"])
		}
		res = e.do("POST", bm+"/bare-metal/power", e.key, `{"action":"cycle"}`)
		res.check(t, 202, "")
		job := res.body["job"].(map[string]any)
		if args := job["args"].(map[string]any); job["kind"] != "service.power" || args["action"] != "restart" {
			t.Errorf("job = %v, want service.power restart", job)
		}
	})

	t.Run("an order is checked before Tenantos is needed", func(t *testing.T) {
		order := func(extra string) string {
			return `{"teamId":"` + e.team.ID.String() + `","name":"metal","provider":"tenantos","plan":{"tags":["For Rent"],"ips":[{"ip":"203.0.113.10","cidr":32}]}` + extra + `}`
		}
		res := e.do("POST", "/api/services", e.platform, order(`,"profileId":1,"rootPassword":"short"`))
		res.check(t, 400, "Validation failed")
		if !slices.Contains(validationErrors(res), "rootPassword must be 8 to 128 printable characters") {
			t.Errorf("validation errors = %v", res.body["validationErrors"])
		}
		res = e.do("POST", "/api/services", e.platform, order(``))
		res.check(t, 400, "Validation failed")
		if errs := validationErrors(res); !slices.ContainsFunc(errs, func(s string) bool { return strings.HasPrefix(s, "profileId is required") }) {
			t.Errorf("validation errors = %v", errs)
		}
		res = e.do("POST", "/api/services", e.platform, order(`,"profileId":1,"rootPassword":"correct horse","installPowerAction":"restartOnly"`))
		if res.status != 503 || res.body["errorKey"] != "provider_unavailable" {
			t.Errorf("a valid order: %d %s, want 503 provider_unavailable", res.status, res.raw)
		}
	})
}

// validationErrors are the answer's validationErrors.
func validationErrors(res response) []string {
	var out []string
	list, _ := res.body["validationErrors"].([]any)
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}
