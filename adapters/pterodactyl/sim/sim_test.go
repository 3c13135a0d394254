package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
)

const (
	appKey     = "ptla_test0000000000000000000000000000000000000"
	aliceKey   = "ptlc_alice000000000000000000000000000000000000"
	bobKey     = "ptlc_bob00000000000000000000000000000000000000"
	adminKey   = "ptlc_admin000000000000000000000000000000000000"
	nodeSecret = "test-node-secret"
	panelURL   = "https://panel.example.test"
	taskTime   = 30 * time.Millisecond
)

// newSim serves a simulator with the demo panel and servers: 1 (alice's,
// running), 2 (alice's, offline, backup limit 1) and 3 (bob's, suspended).
func newSim(t *testing.T, opts ...func(*sim.Config)) (*sim.Server, string) {
	t.Helper()
	cfg := sim.Config{
		PanelURL: panelURL, NodeSecret: nodeSecret, ApplicationKeys: []string{appKey},
		ClientKeys:   map[string]int{adminKey: 1, aliceKey: 2, bobKey: 3},
		TaskDuration: taskTime, InstallDuration: 2 * taskTime, StatsInterval: 20 * time.Millisecond,
		ConsoleInterval: 20 * time.Millisecond, Seed: 1,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := sim.New(cfg)
	for _, g := range sim.DemoServers() {
		if _, err := s.AddServer(g); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts.URL
}

// slow makes tasks long enough for a test to look at a server while they
// run, however loaded the machine.
func slow(c *sim.Config) { c.TaskDuration, c.InstallDuration = 500*time.Millisecond, time.Second }

// response is an API answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body as an object.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do sends a request with a key and Accept: application/json.
func do(t *testing.T, method, url, key string, body any) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, b}
}

// get reads a JSON object, failing unless the status is 200.
func get(t *testing.T, url, key string) map[string]any {
	t.Helper()
	r := do(t, "GET", url, key, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	return r.json(t)
}

// path walks decoded JSON by object keys and list indexes.
func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// apiErr is one entry of the panel's {"errors":[...]}.
type apiErr struct{ Code, Status, Detail, Field, Rule string }

func errorsOf(t *testing.T, r response) []apiErr {
	t.Helper()
	var body struct {
		Errors []struct {
			Code   string `json:"code"`
			Status string `json:"status"`
			Detail string `json:"detail"`
			Meta   struct {
				SourceField string `json:"source_field"`
				Rule        string `json:"rule"`
			} `json:"meta"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not an error body: %s", r.body)
	}
	var out []apiErr
	for _, e := range body.Errors {
		out = append(out, apiErr{e.Code, e.Status, e.Detail, e.Meta.SourceField, e.Meta.Rule})
	}
	return out
}

// wantError checks that an answer is the given single error.
func wantError(t *testing.T, r response, status int, code, detail string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	errs := errorsOf(t, r)
	want := apiErr{Code: code, Status: fmt.Sprint(status), Detail: detail}
	if len(errs) != 1 || errs[0] != want {
		t.Errorf("errors %+v, want %+v", errs, want)
	}
}

// newServerBody is a valid create request for a Paper server on
// allocation 3.
func newServerBody() map[string]any {
	return map[string]any{
		"name": "Hardcore", "user": 2, "egg": 1, "external_id": "order-42",
		"docker_image": "ghcr.io/pterodactyl/yolks:java_21", "startup": "java -jar {{SERVER_JARFILE}}",
		"environment":    map[string]any{"SERVER_JARFILE": "paper.jar", "BUILD_NUMBER": "latest"},
		"limits":         map[string]any{"memory": 2048, "swap": 0, "disk": 10240, "io": 500, "cpu": 100},
		"feature_limits": map[string]any{"databases": 0, "allocations": 1, "backups": 2},
		"allocation":     map[string]any{"default": 3},
	}
}

func TestCreatedServerInstallsThenIsReady(t *testing.T) {
	s, url := newSim(t)
	r := do(t, "POST", url+"/api/application/servers", appKey, newServerBody())
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	attrs := path(created, "attributes").(map[string]any)
	if created["object"] != "server" || attrs["status"] != "installing" || path(attrs, "container", "installed") != 0.0 ||
		len(attrs["identifier"].(string)) != 8 || attrs["external_id"] != "order-42" || attrs["allocation"] != 3.0 ||
		path(attrs, "container", "environment", "SERVER_JARFILE") != "paper.jar" || attrs["nest"] != 1.0 {
		t.Errorf("created server = %v", attrs)
	}
	id := int(attrs["id"].(float64))
	adaptertest.Eventually(t, "the install", func() bool {
		g, _ := s.Server(id)
		return g.Status == ""
	})
	got := get(t, url+"/api/application/servers/external/order-42?include=allocations", appKey)
	if path(got, "attributes", "status") != nil || path(got, "attributes", "container", "installed") != 1.0 ||
		path(got, "attributes", "relationships", "allocations", "data", 0, "attributes", "assigned") != true {
		t.Errorf("after the install: %v", got)
	}
	free := get(t, url+"/api/application/nodes/1/allocations?filter[server_id]=0", appKey)
	for _, a := range path(free, "data").([]any) {
		if path(a, "attributes", "id") == 3.0 {
			t.Errorf("allocation 3 is still listed as free")
		}
	}
}

func TestCreateValidationUsesThePanelShape(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(map[string]any)
		want  apiErr
		count int
	}{
		{"missing memory", func(b map[string]any) { delete(b["limits"].(map[string]any), "memory") },
			apiErr{"ValidationException", "422", "The limits.memory field is required.", "limits.memory", "required"}, 1},
		{"duplicate external id", func(b map[string]any) { b["external_id"] = "demo-mc-1" },
			apiErr{"ValidationException", "422", "The external id has already been taken.", "external_id", "unique"}, 1},
		{"allocation taken", func(b map[string]any) { b["allocation"] = map[string]any{"default": 1} },
			apiErr{"ValidationException", "422", "The selected allocation.default is invalid.", "allocation.default", "exists"}, 1},
		{"io out of range", func(b map[string]any) { b["limits"].(map[string]any)["io"] = 5 },
			apiErr{"ValidationException", "422", "The limits.io must be between 10 and 1000.", "limits.io", "between"}, 1},
		{"backups limit missing", func(b map[string]any) { delete(b["feature_limits"].(map[string]any), "backups") },
			apiErr{"ValidationException", "422", "The feature limits.backups field must be present.", "feature_limits.backups", "present"}, 1},
		{"variable against its regex", func(b map[string]any) { b["environment"].(map[string]any)["SERVER_JARFILE"] = "paper.zip" },
			apiErr{"ValidationException", "422", "The Server Jar File variable format is invalid.", "environment.SERVER_JARFILE", "regex"}, 1},
		{"required variable left out", func(b map[string]any) { b["egg"] = 2; b["environment"] = map[string]any{} },
			apiErr{"ValidationException", "422", "The Password variable field is required.", "environment.PASSWORD", "required"}, 1},
		{"unknown user", func(b map[string]any) { b["user"] = 99 },
			apiErr{"ValidationException", "422", "The selected user is invalid.", "user", "exists"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := newSim(t)
			body := newServerBody()
			tt.edit(body)
			r := do(t, "POST", url+"/api/application/servers", appKey, body)
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			errs := errorsOf(t, r)
			if !slices.Contains(errs, tt.want) {
				t.Errorf("errors %+v, want one %+v", errs, tt.want)
			}
		})
	}
}

func TestBuildRequiresItsFields(t *testing.T) {
	_, url := newSim(t)
	r := do(t, "PATCH", url+"/api/application/servers/2/build", appKey, map[string]any{})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	errs := errorsOf(t, r)
	for _, want := range []apiErr{
		{"ValidationException", "422", "The allocation field is required.", "allocation", "required"},
		{"ValidationException", "422", "The memory field is required when limits is not present.", "memory", "required_without"},
		{"ValidationException", "422", "The feature limits field is required.", "feature_limits", "required"},
	} {
		if !slices.Contains(errs, want) {
			t.Errorf("errors %+v, want one %+v", errs, want)
		}
	}
}

func TestBuildChangesLimitsAndAllocations(t *testing.T) {
	s, url := newSim(t)
	r := do(t, "PATCH", url+"/api/application/servers/2/build", appKey, map[string]any{
		"allocation": 2, "add_allocations": []int{4}, "oom_disabled": false,
		"limits":         map[string]any{"memory": 6144, "swap": 512, "disk": 30000, "io": 400, "cpu": 300},
		"feature_limits": map[string]any{"databases": 2, "allocations": 3, "backups": 5},
	})
	if r.status != http.StatusOK {
		t.Fatalf("build: %d %s", r.status, r.body)
	}
	g, _ := s.Server(2)
	if g.Limits.Memory != 6144 || g.Limits.Swap != 512 || g.Limits.OOMDisabled || g.FeatureLimits.Backups != 5 {
		t.Errorf("server after build = %+v", g)
	}
	got := get(t, url+"/api/application/servers/2?include=allocations", appKey)
	if n := len(path(got, "attributes", "relationships", "allocations", "data").([]any)); n != 2 {
		t.Errorf("server has %d allocations, want 2", n)
	}
	r = do(t, "PATCH", url+"/api/application/servers/2/build", appKey, map[string]any{
		"allocation": 2, "remove_allocations": []int{2}, "memory": 1, "swap": 0, "disk": 1, "io": 10, "cpu": 1,
		"feature_limits": map[string]any{"databases": 0, "backups": 0},
	})
	wantError(t, r, 400, "DisplayException", "You are attempting to delete the default allocation for this server but there is no fallback allocation to use.")
}

func TestDetailsWithoutExternalIDClearIt(t *testing.T) {
	s, url := newSim(t)
	r := do(t, "PATCH", url+"/api/application/servers/1/details", appKey, map[string]any{"name": "Renamed", "user": 3})
	if r.status != http.StatusOK {
		t.Fatalf("details: %d %s", r.status, r.body)
	}
	g, _ := s.Server(1)
	if g.Name != "Renamed" || g.OwnerID != 3 || g.ExternalID != "" {
		t.Errorf("server = %+v, want renamed, bob's and without external id", g)
	}
}

func TestStartupUpdatesEnvironmentAndImage(t *testing.T) {
	s, url := newSim(t)
	r := do(t, "PATCH", url+"/api/application/servers/2/startup", appKey, map[string]any{
		"egg": 1, "image": "ghcr.io/pterodactyl/yolks:java_17", "skip_scripts": false, "startup": "java -jar x.jar",
		"environment": map[string]any{"SERVER_JARFILE": "x.jar", "BUILD_NUMBER": "123"},
	})
	if r.status != http.StatusOK {
		t.Fatalf("startup: %d %s", r.status, r.body)
	}
	g, _ := s.Server(2)
	if g.Image != "ghcr.io/pterodactyl/yolks:java_17" || g.Environment["BUILD_NUMBER"] != "123" || g.Startup != "java -jar x.jar" ||
		g.Environment["MINECRAFT_VERSION"] != "" {
		t.Errorf("server = %+v (a variable left out is cleared)", g)
	}
}

func TestDeployPicksAFreeAllocation(t *testing.T) {
	tests := []struct {
		name   string
		deploy map[string]any
		status int
		port   float64
		detail string
	}{
		{"in the port range", map[string]any{"locations": []int{1}, "dedicated_ip": false, "port_range": []string{"25570-25572"}}, 201, 25570, ""},
		{"on a dedicated ip", map[string]any{"locations": []int{1}, "dedicated_ip": true, "port_range": []string{}}, 201, 25565, ""},
		{"no such location", map[string]any{"locations": []int{9}, "dedicated_ip": false, "port_range": []string{}}, 400, 0,
			"No nodes satisfying the requirements specified for automatic deployment could be found."},
		{"no port left", map[string]any{"locations": []int{1}, "dedicated_ip": false, "port_range": []string{"30000"}}, 400, 0,
			"No allocations satisfying the requirements for automatic deployment were found."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := newSim(t)
			body := newServerBody()
			delete(body, "allocation")
			body["deploy"] = tt.deploy
			r := do(t, "POST", url+"/api/application/servers", appKey, body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.detail != "" {
				if errs := errorsOf(t, r); errs[0].Detail != tt.detail {
					t.Errorf("detail %q, want %q", errs[0].Detail, tt.detail)
				}
				return
			}
			got := get(t, fmt.Sprintf("%s/api/application/servers/%v?include=allocations", url, path(r.json(t), "attributes", "id")), appKey)
			if port := path(got, "attributes", "relationships", "allocations", "data", 0, "attributes", "port"); port != tt.port {
				t.Errorf("deployed on port %v, want %v", port, tt.port)
			}
		})
	}
}

func TestDeletedServerIsGone(t *testing.T) {
	for _, p := range []string{"", "/force"} {
		t.Run("DELETE"+p, func(t *testing.T) {
			s, url := newSim(t)
			if r := do(t, "DELETE", url+"/api/application/servers/1"+p, appKey, nil); r.status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", r.status, r.body)
			}
			wantError(t, do(t, "GET", url+"/api/application/servers/1", appKey, nil), 404, "NotFoundHttpException",
				"The requested resource could not be found on the server.")
			if _, ok := s.Server(1); ok {
				t.Error("Server(1) still exists")
			}
			free := get(t, url+"/api/application/nodes/1/allocations?filter[server_id]=0&per_page=1", appKey)
			if path(free, "data", 0, "attributes", "id") != 1.0 {
				t.Errorf("allocation 1 is not free again: %v", path(free, "data", 0))
			}
		})
	}
}

func TestSuspensionStopsTheServerAndBlocksTheClientAPI(t *testing.T) {
	s, url := newSim(t)
	if r := do(t, "POST", url+"/api/application/servers/1/suspend", appKey, nil); r.status != http.StatusNoContent {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	if g, _ := s.Server(1); g.Status != sim.StatusSuspended || g.State != sim.StateOffline {
		t.Errorf("suspended server is %q/%q, want suspended/offline", g.Status, g.State)
	}
	g, _ := s.Server(1)
	base := url + "/api/client/servers/" + g.Identifier
	wantError(t, do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}), 409, "ServerStateConflictException",
		"This server is currently suspended and the functionality requested is unavailable.")
	if res := get(t, base+"/resources", aliceKey); path(res, "attributes", "is_suspended") != true {
		t.Errorf("resources of a suspended server: %v", res)
	}
	do(t, "POST", url+"/api/application/servers/1/unsuspend", appKey, nil)
	if r := do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}); r.status != http.StatusNoContent {
		t.Errorf("power after unsuspend: %d %s", r.status, r.body)
	}
}

func TestReinstallBlocksTheServerUntilItEnds(t *testing.T) {
	s, url := newSim(t, slow)
	if r := do(t, "POST", url+"/api/application/servers/1/reinstall", appKey, nil); r.status != http.StatusNoContent {
		t.Fatalf("reinstall: %d %s", r.status, r.body)
	}
	g, _ := s.Server(1)
	if g.Status != sim.StatusInstalling || g.State != sim.StateOffline {
		t.Errorf("reinstalling server is %q/%q", g.Status, g.State)
	}
	wantError(t, do(t, "POST", url+"/api/client/servers/"+g.Identifier+"/power", aliceKey, map[string]any{"signal": "start"}),
		409, "ServerStateConflictException", "This server has not yet completed its installation process, please try again later.")
	adaptertest.Eventually(t, "the reinstall", func() bool { g, _ := s.Server(1); return g.Status == "" })
}

func TestEggIncludesItsVariableRules(t *testing.T) {
	_, url := newSim(t)
	egg := get(t, url+"/api/application/nests/1/eggs/1?include=variables", appKey)
	vars := path(egg, "attributes", "relationships", "variables", "data").([]any)
	if len(vars) != 3 || path(vars[1], "attributes", "env_variable") != "SERVER_JARFILE" ||
		!strings.HasPrefix(path(vars[1], "attributes", "rules").(string), "required|regex:") {
		t.Errorf("variables = %v", vars)
	}
	wantError(t, do(t, "GET", url+"/api/application/nests/2/eggs/1", appKey, nil), 404, "NotFoundHttpException",
		"The requested resource could not be found on the server.")
}

func TestListsArePaginated(t *testing.T) {
	tests := []struct {
		path         string
		total, count float64
		next         bool
	}{
		{"/api/application/nodes/1/allocations?per_page=5", 20, 5, true},
		{"/api/application/nodes/1/allocations?per_page=5&page=4", 20, 5, false},
		{"/api/application/nodes/1/allocations?filter[server_id]=0", 18, 18, false},
		{"/api/application/nodes", 2, 2, false},
		{"/api/application/locations", 1, 1, false},
		{"/api/application/users?filter[email]=alice@", 1, 1, false},
		{"/api/application/servers?filter[external_id]=demo-mc", 2, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, url := newSim(t)
			got := get(t, url+tt.path, appKey)
			p := path(got, "meta", "pagination")
			_, hasNext := path(p, "links").(map[string]any)["next"]
			if got["object"] != "list" || path(p, "total") != tt.total || path(p, "count") != tt.count ||
				float64(len(got["data"].([]any))) != tt.count || hasNext != tt.next {
				t.Errorf("got %v", p)
			}
		})
	}
}

func TestCreatedUserIsListed(t *testing.T) {
	_, url := newSim(t)
	body := map[string]any{"email": "carol@example.test", "username": "carol", "first_name": "Carol", "last_name": "C", "external_id": "cust-7"}
	r := do(t, "POST", url+"/api/application/users", appKey, body)
	if r.status != http.StatusCreated || path(r.json(t), "attributes", "username") != "carol" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	got := get(t, url+"/api/application/users?filter[external_id]=cust-7", appKey)
	if path(got, "data", 0, "attributes", "email") != "carol@example.test" {
		t.Errorf("listed: %v", got)
	}
	r = do(t, "POST", url+"/api/application/users", appKey, body)
	if errs := errorsOf(t, r); r.status != 422 || !slices.Contains(errs, apiErr{"ValidationException", "422",
		"The email has already been taken.", "email", "unique"}) {
		t.Errorf("duplicate: %d %+v", r.status, errs)
	}
}

func TestKeysAreCheckedPerAPI(t *testing.T) {
	tests := []struct {
		name, path, key string
		status          int
		code, detail    string
	}{
		{"no key", "/api/application/servers", "", 401, "AuthenticationException", "Unauthenticated."},
		{"unknown key", "/api/client/servers/{alice}", "ptlc_nope", 401, "AuthenticationException", "Unauthenticated."},
		{"application key on the client API", "/api/client/servers/{alice}", appKey, 403, "AccessDeniedHttpException",
			"You are attempting to use an application API key on an endpoint that requires a client API key."},
		{"customer key on the application API", "/api/application/servers", aliceKey, 403, "AccessDeniedHttpException",
			"This account does not have permission to access the API."},
		{"another user's server", "/api/client/servers/{alice}", bobKey, 404, "NotFoundHttpException",
			"The requested resource does not exist on this server."},
		{"unknown server", "/api/client/servers/abcdef12", aliceKey, 404, "NotFoundHttpException",
			"The requested resource could not be found on the server."},
		{"unknown route", "/api/application/nope", appKey, 404, "NotFoundHttpException",
			"The route api/application/nope could not be found."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := newSim(t)
			g, _ := s.Server(1)
			wantError(t, do(t, "GET", url+strings.ReplaceAll(tt.path, "{alice}", g.Identifier), tt.key, nil), tt.status, tt.code, tt.detail)
		})
	}
}

func TestAnAdminKeyReachesEveryServer(t *testing.T) {
	s, url := newSim(t)
	g, _ := s.Server(1)
	if got := get(t, url+"/api/client/servers/"+g.UUID, adminKey); path(got, "meta", "is_server_owner") != false {
		t.Errorf("admin view by uuid: %v", got["meta"])
	}
	if r := do(t, "GET", url+"/api/application/servers/1", adminKey, nil); r.status != 200 {
		t.Errorf("admin's account key on the application API: %d", r.status)
	}
}

func TestWithoutAcceptJSONABadKeyRedirectsToLogin(t *testing.T) {
	_, url := newSim(t)
	req, _ := http.NewRequest("GET", url+"/api/application/servers", nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/auth/login" {
		t.Errorf("got %d to %q, want 302 to /auth/login", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestMalformedJSONIsABadRequest(t *testing.T) {
	_, url := newSim(t)
	req, _ := http.NewRequest("POST", url+"/api/application/servers", strings.NewReader("{nope"))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+appKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wantError(t, response{res.StatusCode, res.Header, b}, 400, "BadRequestHttpException",
		"The JSON data passed in the request appears to be malformed: Syntax error")
}

func TestSetStatusLeavesTheServerAsThePanelWould(t *testing.T) {
	s, url := newSim(t)
	base := clientURL(t, s, url, 2)
	if err := s.SetStatus(2, sim.StatusInstallFailed); err != nil {
		t.Fatal(err)
	}
	if got := appServer(t, url, 2); got["status"] != "install_failed" || path(got, "container", "installed") != 0.0 {
		t.Errorf("server marked install_failed shows %v", got)
	}
	wantError(t, do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}), 409,
		"ServerStateConflictException", "This server has not yet completed its installation process, please try again later.")
	if err := s.SetStatus(2, ""); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", base+"/power", aliceKey, map[string]any{"signal": "start"}); r.status != http.StatusNoContent {
		t.Errorf("power after the status is cleared: %d %s", r.status, r.body)
	}
	for _, tt := range []struct {
		id     int
		status string
	}{{2, sim.StatusSuspended}, {2, "bogus"}, {3, ""}, {99, ""}} {
		if err := s.SetStatus(tt.id, tt.status); err == nil {
			t.Errorf("SetStatus(%d, %q) succeeded, want refused", tt.id, tt.status)
		}
	}
}
