package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/webhook"
	"github.com/hostfleet/provisiond/internal/service"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/monitoring/metrics"
	"github.com/hostfleet/provisiond/queries"
	"github.com/hostfleet/provisiond/web"
	"github.com/hostfleet/provisiond/web/apikey"
	"github.com/hostfleet/provisiond/web/contract"
)

// env is an API on real PostgreSQL and Redis with no workers: jobs stay
// queued, which is what these tests want.
type env struct {
	t         *testing.T
	url       string
	q         *queries.Queries
	inspector *asynq.Inspector
	team      queries.Team
	key       string
	// platform is a platform key (of a team of its own).
	platform string
	// pve is the simulated Proxmox cluster, with the demo VMs.
	pve *sim.Server
	// metrics are the server's.
	metrics *metrics.Metrics
	// client holds every request and answer to the OpenAPI description.
	client *http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool, _ := jobtest.DB(t)
	ropt := jobtest.Redis(t)
	log := jobtest.Logger(t)
	q := queries.New(pool)
	tasks := asynq.NewClient(ropt)
	t.Cleanup(func() { tasks.Close() })
	inspector := asynq.NewInspector(ropt)
	t.Cleanup(func() { inspector.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hub := jobs.NewEventHub(pool, log)
	go hub.Run(ctx)
	keys := apikey.NewCache(q, time.Minute)
	go keys.Run(ctx, pool, log)
	pve := sim.New(sim.Config{TokenID: "root@pam!t", TokenSecret: "s", TaskDuration: 10 * time.Millisecond})
	for _, vm := range sim.DemoVMs() {
		pve.AddVM(vm)
	}
	pveSrv := httptest.NewServer(pve)
	t.Cleanup(func() { pveSrv.Close(); pve.Close() })
	px, err := proxmox.New(proxmox.Config{URL: pveSrv.URL + "/api2/json", TokenID: "root@pam!t", TokenSecret: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	vps := &jobs.VPSWorkers{Queries: q, Proxmox: px}
	providers := jobs.NewRegistry(vps)
	jc := jobClient(t, q, tasks, log)
	srv := &web.Server{
		VPS:       vps,
		Keys:      keys,
		Config:    web.Config{RateLimit: 1000, KeepAlive: 50 * time.Millisecond},
		Queries:   q,
		Jobs:      jc,
		Events:    hub,
		Inspector: inspector,
		Limiter:   redis_rate.NewLimiter(jobtest.RedisClient(t, ropt)),
		Metrics:   m,
		Providers: providers,
		Services: &service.Services{DB: pool, Queries: q, Jobs: jc, Tasks: inspector, Providers: providers,
			Verifier: &jobs.Reconciler{Queries: q, Providers: providers, Log: log}, Log: log},
		Webhooks: &webhook.Guard{},
		Log:      log,
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &env{t: t, url: ts.URL, q: q, inspector: inspector, pve: pve, metrics: m, client: contractClient(t)}
	e.team = e.newTeam("acme")
	e.key = e.newKey(apikey.Spec{TeamID: e.team.ID})
	e.platform = e.newKey(apikey.Spec{TeamID: e.newTeam("platform").ID, Platform: true})
	return e
}

func (e *env) newTeam(name string) queries.Team {
	e.t.Helper()
	team, err := e.q.CreateTeam(context.Background(), name)
	if err != nil {
		e.t.Fatalf("create team: %v", err)
	}
	return team
}

func (e *env) newKey(spec apikey.Spec) string {
	e.t.Helper()
	key, _, err := apikey.Create(context.Background(), e.q, spec)
	if err != nil {
		e.t.Fatalf("create key: %v", err)
	}
	return key
}

func (e *env) newService(team uuid.UUID) queries.Service {
	e.t.Helper()
	svc, err := e.q.CreateService(context.Background(), queries.CreateServiceParams{
		TeamID: team, Name: "vps", Provider: "proxmox", ProviderRef: []byte(`{"node":"pve1","vmid":100}`),
		Plan: []byte(`{"cores":1,"memoryMb":1024,"diskGb":10}`), Status: "active",
	})
	if err != nil {
		e.t.Fatalf("create service: %v", err)
	}
	return svc
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends a request with the given key header ("x-api-key" or
// "Authorization") unless key is empty.
func (e *env) do(method, path, key, body string, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		e.t.Fatalf("%s %s: answer is not JSON (%d): %q", method, path, res.StatusCode, raw)
	}
	return out
}

func (r response) check(t *testing.T, status int, errText string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.raw)
	}
	wantSuccess := status < 400
	if r.body["success"] != wantSuccess {
		t.Fatalf("success = %v, want %v; body %s", r.body["success"], wantSuccess, r.raw)
	}
	if errText != "" && r.body["error"] != errText {
		t.Fatalf("error = %q, want %q", r.body["error"], errText)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	svc := e.newService(e.team.ID)
	other := e.newTeam("other")
	otherSvc := e.newService(other.ID)
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)
	revoked := e.newKey(apikey.Spec{TeamID: e.team.ID})
	if _, err := e.q.RevokeAPIKey(ctx, revoked[:11]); err != nil {
		t.Fatal(err)
	}
	unknown, _, _ := apikey.New()

	tests := []struct {
		name    string
		key     string
		header  string // "" = x-api-key
		path    string
		status  int
		errText string
	}{
		{"no key is refused", "", "", "/api/services", 401, "Authentication required"},
		{"malformed key is refused", "sk_nope", "", "/api/services", 401, "Invalid API key"},
		{"unknown key is refused", unknown, "", "/api/services", 401, "Invalid API key"},
		{"revoked key is refused", revoked, "", "/api/services", 401, "Invalid API key"},
		{"expired key is refused", e.newKey(apikey.Spec{TeamID: e.team.ID, ExpiresAt: &past}), "", "/api/services", 401, "API key expired"},
		{"key from a disallowed IP is refused", e.newKey(apikey.Spec{TeamID: e.team.ID, IPs: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}), "", "/api/services", 401, "API key not allowed from this IP address"},
		{"key from an allowed IP is let in", e.newKey(apikey.Spec{TeamID: e.team.ID, IPs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}), "", "/api/services", 200, ""},
		{"key without the read scope is forbidden", e.newKey(apikey.Spec{TeamID: e.team.ID, Scopes: []string{"dns.read"}}), "", "/api/services", 403, "Insufficient API key permissions"},
		{"key with the read scope may read", e.newKey(apikey.Spec{TeamID: e.team.ID, Scopes: []string{"services.read"}, ExpiresAt: &future}), "", "/api/services/" + svc.ID.String(), 200, ""},
		{"another team's service is not found", e.key, "", "/api/services/" + otherSvc.ID.String(), 404, "Service not found"},
		{"good key in x-api-key", e.key, "", "/api/services/" + svc.ID.String(), 200, ""},
		{"good key as a bearer token", e.key, "Authorization", "/api/services/" + svc.ID.String(), 200, ""},
		{"ping needs no key", "", "", "/api/ping", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res response
			if tt.header == "Authorization" {
				res = e.do("GET", tt.path, "", "", "Authorization", "Bearer "+tt.key)
			} else {
				res = e.do("GET", tt.path, tt.key, "")
			}
			res.check(t, tt.status, tt.errText)
		})
	}
}

func TestKeyRevokedAfterUseIsRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	key := e.newKey(apikey.Spec{TeamID: e.team.ID})
	e.do("GET", "/api/services", key, "").check(t, 200, "") // now cached
	if _, err := e.q.RevokeAPIKey(context.Background(), key[:11]); err != nil {
		t.Fatal(err)
	}
	jobtest.Eventually(t, 2*time.Second, "revoked key still accepted", func() bool {
		return e.do("GET", "/api/services", key, "").status == http.StatusUnauthorized
	})
}

func TestWriteScopeNeededToMutate(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	readOnly := e.newKey(apikey.Spec{TeamID: e.team.ID, Scopes: []string{"services.read"}})
	e.do("POST", "/api/services/"+svc.ID.String()+"/action", readOnly, `{"action":"start"}`).
		check(t, 403, "Insufficient API key permissions")
	writer := e.newKey(apikey.Spec{TeamID: e.team.ID, Scopes: []string{"services.write"}})
	e.do("POST", "/api/services/"+svc.ID.String()+"/action", writer, `{"action":"start"}`).check(t, 202, "")
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	key := e.newKey(apikey.Spec{TeamID: e.team.ID, RateLimit: 3})
	for i := range 3 {
		res := e.do("GET", "/api/services", key, "")
		res.check(t, 200, "")
		if got := res.header.Get("X-RateLimit-Limit"); got != "3" {
			t.Fatalf("X-RateLimit-Limit = %q, want 3", got)
		}
		if got, want := res.header.Get("X-RateLimit-Remaining"), []string{"2", "1", "0"}[i]; got != want {
			t.Fatalf("request %d: X-RateLimit-Remaining = %q, want %s", i+1, got, want)
		}
		if res.header.Get("X-RateLimit-Reset") == "" {
			t.Fatal("X-RateLimit-Reset missing")
		}
	}
	res := e.do("GET", "/api/services", key, "")
	res.check(t, 429, "Rate limit exceeded")
	if n, ok := res.body["retryAfter"].(float64); !ok || n < 1 || n > 60 {
		t.Fatalf("retryAfter = %v, want 1..60 seconds", res.body["retryAfter"])
	}
	if res.header.Get("Retry-After") == "" || res.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers: Retry-After %q, Remaining %q", res.header.Get("Retry-After"), res.header.Get("X-RateLimit-Remaining"))
	}
	reset := res.header.Get("X-RateLimit-Reset")
	if len(reset) != 13 { // milliseconds since the epoch
		t.Fatalf("X-RateLimit-Reset = %q, want ms epoch", reset)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	action := "/api/services/" + svc.ID.String() + "/action"
	tests := []struct {
		name, method, path, body string
		status                   int
		errText                  string
		validation               string
	}{
		{"unknown action", "POST", action, `{"action":"explode"}`, 400, "Validation failed", "action must be one of: start, stop, restart, reset, kill, suspend, resume"},
		{"missing action", "POST", action, `{}`, 400, "Validation failed", "action is required"},
		{"action of the wrong type", "POST", action, `{"action":5}`, 400, "Validation failed", "action must be a string"},
		{"malformed JSON", "POST", action, `{"action":`, 400, "Malformed JSON body", ""},
		{"body that is not an object", "POST", action, `["start"]`, 400, "Request body must be a JSON object", ""},
		{"two JSON values", "POST", action, `{"action":"start"}{}`, 400, "Malformed JSON body: more than one value", ""},
		{"empty body", "POST", action, ``, 400, "Request body is required", ""},
		{"unknown service", "POST", "/api/services/" + uuid.NewString() + "/action", `{"action":"start"}`, 404, "Service not found", ""},
		{"service id that is no id", "GET", "/api/services/not-an-id", ``, 404, "Service not found", ""},
		{"unknown job", "GET", "/api/jobs/" + uuid.NewString(), ``, 404, "Job not found", ""},
		{"unknown route", "GET", "/api/nothing-here", ``, 404, "Not found", ""},
		{"a path outside the API", "GET", "/nothing-here", ``, 404, "Not found", ""},
		{"wrong method", "DELETE", "/api/services", ``, 405, "Method DELETE is not allowed here", ""},
		{"page that is no number", "GET", "/api/services?page=x", ``, 400, "Validation failed", "page must be a whole number from 1 to 1000000"},
		{"page whose offset overflows", "GET", "/api/services?page=30000000&limit=100", ``, 400, "Validation failed", "page must be a whole number from 1 to 1000000"},
		{"query value with a NUL", "GET", "/api/jobs?kind=%00", ``, 400, "Validation failed", "kind must not contain NUL characters"},
		{"query value that is not UTF-8", "GET", "/api/jobs?kind=%FF", ``, 400, "Validation failed", "kind must be valid UTF-8"},
		{"service name with a NUL", "POST", "/api/services", `{"name":"x\u0000","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":1}}`, 400, "Validation failed", "name must not contain NUL characters"},
		{"service name that is not UTF-8", "POST", "/api/services", "{\"name\":\"x\xff\",\"provider\":\"proxmox\",\"plan\":{\"cores\":1,\"memoryMb\":512,\"diskGb\":1}}", 400, "Validation failed", "the request body must be valid UTF-8"},
		{"a NUL in the body of a route that takes none", "POST", "/api/services/" + svc.ID.String() + "/rescue", `{"x":"a\u0000b"}`, 400, "Validation failed", "x must not contain NUL characters"},
		{"a query pair that cannot be read", "GET", "/api/jobs?status=failed;x", ``, 400, "Validation failed", "the query string is malformed: invalid semicolon separator in query"},
		{"game route on a VPS", "GET", "/api/services/" + svc.ID.String() + "/allocations", ``, 400, "This endpoint is for Pterodactyl services; this service is on proxmox", ""},
		{"limit out of range", "GET", "/api/jobs?limit=1000", ``, 400, "Validation failed", "limit must be a whole number from 1 to 100"},
		{"unknown job status filter", "GET", "/api/jobs?status=done", ``, 400, "Validation failed", "status must be one of: queued, scheduled, running, retrying, succeeded, failed, cancelled"},
		{"service with a bad plan", "POST", "/api/services", `{"name":"x","provider":"proxmox","plan":{"cores":0,"memoryMb":1,"diskGb":1}}`, 400, "Validation failed", "plan.cores must be from 1 to 512"},
		{"service of an unknown provider", "POST", "/api/services", `{"name":"x","provider":"aws","plan":{"cores":1,"memoryMb":512,"diskGb":1}}`, 400, "Validation failed", "provider must be one of: proxmox, pterodactyl, tenantos"},
		{"service with a bad period end", "POST", "/api/services", `{"name":"x","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":1},"billingPeriodEnd":"tomorrow"}`, 400, "Validation failed", "billingPeriodEnd must be an RFC 3339 time such as 2026-12-31T00:00:00Z"},
		{"service plan of the wrong type", "POST", "/api/services", `{"name":"x","provider":"proxmox","plan":{"cores":"two"}}`, 400, "Validation failed", "plan.cores must be an integer"},
		{"password with a NUL", "POST", "/api/services", `{"name":"x","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":10},"templateId":9000,"password":"abcdefgh\u0000ij"}`, 400, "Validation failed", "password must not contain NUL characters"},
		{"password with bytes that are not UTF-8", "POST", "/api/services", "{\"name\":\"x\",\"provider\":\"proxmox\",\"plan\":{\"cores\":1,\"memoryMb\":512,\"diskGb\":10},\"templateId\":9000,\"password\":\"abc\xffdefghij\"}", 400, "Validation failed", "the request body must be valid UTF-8"},
		{"repair of a sound service", "POST", "/api/services/" + svc.ID.String() + "/repair", ``, 409, "Service does not need repair; repair is for a service that needs_repair or whose provision never finished", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.key
			if tt.method == "POST" && tt.path == "/api/services" {
				key = e.platform // only a platform key gets as far as the body
			}
			res := e.do(tt.method, tt.path, key, tt.body)
			res.check(t, tt.status, tt.errText)
			if tt.validation == "" {
				return
			}
			errs, _ := res.body["validationErrors"].([]any)
			for _, v := range errs {
				if v == tt.validation {
					return
				}
			}
			t.Fatalf("validationErrors = %v, want it to hold %q", errs, tt.validation)
		})
	}
}

func TestCreateServiceAnswersCreated(t *testing.T) {
	e := newEnv(t)
	res := e.do("POST", "/api/services", e.platform,
		`{"teamId":"`+e.team.ID.String()+`","name":"web-1","provider":"proxmox","location":"fsn1","plan":{"cores":2,"memoryMb":2048,"diskGb":20},"providerRef":{"node":"pve1","vmid":101},"billingPeriodEnd":"2026-12-24T00:00:00Z"}`)
	res.check(t, 201, "")
	svc := res.body["service"].(map[string]any)
	if svc["status"] != "active" || svc["name"] != "web-1" || svc["billingPeriodEnd"] != "2026-12-24T00:00:00Z" {
		t.Fatalf("service = %v", svc)
	}
	list := e.do("GET", "/api/services?page=1&limit=10", e.key, "")
	list.check(t, 200, "")
	p := list.body["pagination"].(map[string]any)
	if p["total"] != 1.0 || p["pages"] != 1.0 || len(list.body["services"].([]any)) != 1 {
		t.Fatalf("list = %s", list.raw)
	}
	vm, _ := e.pve.VM("pve1", 101)
	if !slices.Contains(vm.Tags, jobs.VMTag(uuid.MustParse(svc["id"].(string)))) {
		t.Errorf("registered VM's tags = %v, want the service's tag", vm.Tags)
	}
}

func TestRegisteringAVMThatIsNotFreeIsRefused(t *testing.T) {
	e := newEnv(t)
	register := func(team, vmid string) response {
		return e.do("POST", "/api/services", e.platform,
			`{"teamId":"`+team+`","name":"vps","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":20},"providerRef":{"node":"pve1","vmid":`+vmid+`}}`)
	}
	register(e.team.ID.String(), "100").check(t, 201, "")
	otherTeam := e.newTeam("other")
	other, otherKey := otherTeam.ID.String(), e.newKey(apikey.Spec{TeamID: otherTeam.ID})
	tests := []struct {
		name, key, vmid string
		status          int
		errorKey        string
	}{
		{"the same VM again", e.team.ID.String(), "100", 409, "vm_unavailable"},
		{"another team's VM", other, "100", 409, "vm_unavailable"},
		{"a VM that does not exist", other, "4242", 409, "vm_unavailable"},
		{"a template", other, "9000", 409, "vm_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := register(tt.key, tt.vmid)
			res.check(t, tt.status, "")
			if res.body["errorKey"] != tt.errorKey {
				t.Errorf("errorKey = %v, want %s", res.body["errorKey"], tt.errorKey)
			}
		})
	}
	onNowhere := e.do("POST", "/api/services", e.platform,
		`{"teamId":"`+other+`","name":"vps","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":20},"providerRef":{"node":"pve9","vmid":100}}`)
	if onNowhere.status != 409 || onNowhere.body["errorKey"] != "vm_unavailable" {
		t.Errorf("a VM on a node that does not exist: %d %s; want 409 vm_unavailable", onNowhere.status, onNowhere.raw)
	}
	list := e.do("GET", "/api/services", otherKey, "")
	if n := len(list.body["services"].([]any)); n != 0 {
		t.Errorf("refused registrations left %d services behind", n)
	}
}

func TestIdempotencyKeyReturnsTheFirstJob(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	path := "/api/services/" + svc.ID.String() + "/action"
	first := e.do("POST", path, e.key, `{"action":"restart"}`, "Idempotency-Key", "abc-1")
	first.check(t, 202, "")
	again := e.do("POST", path, e.key, `{ "action": "restart" }`, "Idempotency-Key", "abc-1")
	again.check(t, 202, "")
	id1 := first.body["job"].(map[string]any)["id"]
	id2 := again.body["job"].(map[string]any)["id"]
	if id1 != id2 {
		t.Fatalf("second request made job %v, want the first job %v", id2, id1)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("replayed answer lacks Idempotent-Replayed: true")
	}
	e.do("POST", path, e.key, `{"action":"stop"}`, "Idempotency-Key", "abc-1").
		check(t, 409, "Idempotency-Key was already used for a different request")
}

func TestSecondMutatingJobOnAServiceConflicts(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	path := "/api/services/" + svc.ID.String() + "/action"
	first := e.do("POST", path, e.key, `{"action":"stop"}`)
	first.check(t, 202, "")
	id := first.body["job"].(map[string]any)["id"].(string)
	second := e.do("POST", path, e.key, `{"action":"start"}`)
	second.check(t, 409, "Service already has job "+id+" queued")
	if second.body["jobId"] != id || second.body["errorKey"] != "service_busy" {
		t.Fatalf("409 body = %s", second.raw)
	}
}

func TestCancelQueuedJobRemovesItsTask(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	res := e.do("POST", "/api/services/"+svc.ID.String()+"/action", e.key, `{"action":"stop"}`)
	res.check(t, 202, "")
	job := res.body["job"].(map[string]any)
	if _, err := e.inspector.GetTaskInfo(jobs.QueueCritical, job["id"].(string)); err != nil {
		t.Fatalf("task of the new job: %v", err)
	}
	cancel := e.do("POST", "/api/jobs/"+job["id"].(string)+"/cancel", e.key, "")
	cancel.check(t, 200, "")
	if got := cancel.body["job"].(map[string]any)["status"]; got != "cancelled" {
		t.Fatalf("status after cancel = %v", got)
	}
	if _, err := e.inspector.GetTaskInfo(jobs.QueueCritical, job["id"].(string)); err == nil {
		t.Fatal("task still queued after the job was cancelled")
	}
	e.do("POST", "/api/jobs/"+job["id"].(string)+"/cancel", e.key, "").check(t, 409, "Job has already ended (cancelled)")
	// The service is free again.
	e.do("POST", "/api/services/"+svc.ID.String()+"/action", e.key, `{"action":"start"}`).check(t, 202, "")
}

func TestListJobsFilters(t *testing.T) {
	e := newEnv(t)
	a, b := e.newService(e.team.ID), e.newService(e.team.ID)
	e.do("POST", "/api/services/"+a.ID.String()+"/action", e.key, `{"action":"stop"}`).check(t, 202, "")
	e.do("POST", "/api/services/"+b.ID.String()+"/action", e.key, `{"action":"start"}`).check(t, 202, "")
	res := e.do("GET", "/api/jobs?service="+a.ID.String()+"&status=queued&kind=service.power", e.key, "")
	res.check(t, 200, "")
	list := res.body["jobs"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["serviceId"] != a.ID.String() {
		t.Fatalf("filtered jobs = %s", res.raw)
	}
}

func TestJobEventsStreamUntilTheJobEnds(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	res := e.do("POST", "/api/services/"+svc.ID.String()+"/action", e.key, `{"action":"stop"}`)
	res.check(t, 202, "")
	id := uuid.MustParse(res.body["job"].(map[string]any)["id"].(string))

	req, _ := http.NewRequest("GET", e.url+"/api/jobs/"+id.String()+"/events", nil)
	req.Header.Set("x-api-key", e.key)
	stream, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if ct := stream.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	// Drive the job the way a worker does.
	ctx := context.Background()
	go func() {
		row, err := e.q.StartJobAttempt(ctx, id)
		if err != nil {
			t.Error(err)
			return
		}
		e.q.SaveJobCheckpoint(ctx, queries.SaveJobCheckpointParams{ID: id, Attempts: row.Attempts, Step: "stop", Progress: 0, Checkpoint: []byte(`{}`)})
		e.q.FinishJobAttempt(ctx, queries.FinishJobAttemptParams{ID: id, Attempts: row.Attempts, Status: "succeeded"})
	}()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(stream.Body)
		done <- b
	}()
	var body []byte
	select {
	case body = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("event stream did not end after the job ended")
	}
	for _, want := range []string{`"status":"queued"`, `"status":"running"`, "event: step", `"step":"stop"`, `"status":"succeeded"`, "event: end"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Fatalf("stream lacks %s:\n%s", want, body)
		}
	}
	// A client that comes back after the last event is told the stream
	// has ended, at once.
	ids := regexp.MustCompile(`id: (\d+)`).FindAllSubmatch(body, -1)
	req.Header.Set("Last-Event-ID", string(ids[len(ids)-1][1]))
	again, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Body.Close()
	go func() {
		b, _ := io.ReadAll(again.Body)
		done <- b
	}()
	select {
	case body = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stream resumed after the job's last event did not end")
	}
	if !bytes.Contains(body, []byte("event: end")) || bytes.Contains(body, []byte("event: status")) {
		t.Errorf("resumed stream:\n%s\nwant only its end", body)
	}
}

// jobClient is a job client whose sealer has a key.
func jobClient(t *testing.T, q *queries.Queries, tasks *asynq.Client, log *slog.Logger) *jobs.Client {
	t.Helper()
	c := jobs.NewClient(q, tasks, time.Hour, log)
	sealer, err := jobs.NewSealer("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	if err != nil {
		t.Fatal(err)
	}
	c.Sealer = sealer
	return c
}

func TestIdempotencyKeyThatIsNotUTF8IsRefused(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	e.do("POST", "/api/services/"+svc.ID.String()+"/action", e.key, `{"action":"restart"}`, "Idempotency-Key", "abc\xff").
		check(t, http.StatusBadRequest, "Validation failed")
}

func TestMadeUpMethodsShareOneMetricLabel(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{"SECX1", "SECX2", "BREW"} {
		e.do(m, "/api/services", "", "")
	}
	families, err := e.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] = true
				}
			}
		}
	}
	if methods["SECX1"] || methods["BREW"] || !methods["other"] {
		t.Errorf("method labels %v, want made-up methods counted as other", methods)
	}
}

func TestPlatformKeysAloneCreateRenewAndSuspend(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	path := "/api/services/" + svc.ID.String()
	other := e.newKey(apikey.Spec{TeamID: e.newTeam("other").ID})
	create := `{"teamId":"` + e.team.ID.String() + `","name":"vps","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":20},"providerRef":{"node":"pve1","vmid":101}}`
	tests := []struct {
		name, method, path, key, body string
		status                        int
		errorKey                      string
	}{
		{"a team key may not register a service", "POST", "/api/services", e.key, create, 403, "platform_key_required"},
		{"a team key may not renew", "POST", path + "/renew", e.key, `{"billingPeriodEnd":"2027-01-01T00:00:00Z"}`, 403, "platform_key_required"},
		{"a team key may not suspend", "POST", path + "/action", e.key, `{"action":"suspend"}`, 403, "platform_key_required"},
		{"a team key may not resume", "POST", path + "/action", e.key, `{"action":"resume"}`, 403, "platform_key_required"},
		{"a team key may restart", "POST", path + "/action", e.key, `{"action":"restart"}`, 202, ""},
		{"another team's key does not see the service", "GET", path, other, "", 404, ""},
		{"another team's key does not see this team", "GET", "/api/services?teamId=" + e.team.ID.String(), other, "", 404, ""},
		{"a platform key sees any team's service", "GET", path, e.platform, "", 200, ""},
		{"a platform key lists a team's services", "GET", "/api/services?teamId=" + e.team.ID.String(), e.platform, "", 200, ""},
		{"a platform key must name the team it lists", "GET", "/api/services", e.platform, "", 400, ""},
		{"a platform key must name the team of a new service", "POST", "/api/services", e.platform, strings.Replace(create, `"teamId":"`+e.team.ID.String()+`",`, "", 1), 400, ""},
		{"a platform key may not name a team that does not exist", "POST", "/api/services", e.platform, strings.Replace(create, e.team.ID.String(), uuid.NewString(), 1), 400, ""},
		{"a platform key registers a service for a team", "POST", "/api/services", e.platform, create, 201, ""},
		{"a platform key renews", "POST", path + "/renew", e.platform, `{"billingPeriodEnd":"2027-01-01T00:00:00Z"}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(tt.method, tt.path, tt.key, tt.body)
			if res.status != tt.status || tt.errorKey != "" && res.body["errorKey"] != tt.errorKey {
				t.Errorf("%d %s, want %d %s", res.status, res.raw, tt.status, tt.errorKey)
			}
		})
	}
	// The job a platform key starts on a team's service is the team's.
	res := e.do("POST", "/api/services/"+e.newService(e.team.ID).ID.String()+"/action", e.platform, `{"action":"suspend"}`)
	res.check(t, 202, "")
	e.do("GET", "/api/jobs/"+res.body["job"].(map[string]any)["id"].(string), e.key, "").check(t, 200, "")
}
func TestMeShowsTheKeyAndItsTeamWhateverItsScopes(t *testing.T) {
	e := newEnv(t)
	narrow := e.newKey(apikey.Spec{TeamID: e.team.ID, Name: "dns only", Scopes: []string{"dns.read"}, RateLimit: 30})
	res := e.do("GET", "/api/me", narrow, "")
	res.check(t, 200, "")
	me := res.body["me"].(map[string]any)
	key, team := me["key"].(map[string]any), me["team"].(map[string]any)
	if key["name"] != "dns only" || key["platform"] != false || key["rateLimit"] != 30.0 || !strings.HasPrefix(narrow, key["prefix"].(string)) ||
		team["id"] != e.team.ID.String() || team["name"] != "acme" {
		t.Errorf("me = %v", me)
	}
	if res := e.do("GET", "/api/me", e.platform, ""); res.body["me"].(map[string]any)["key"].(map[string]any)["platform"] != true {
		t.Errorf("a platform key's me = %s", res.raw)
	}
	e.do("GET", "/api/me", "", "").check(t, 401, "Authentication required")
}

// contractClient is an HTTP client that holds every request and answer of
// the test to the OpenAPI description (see contract.Checker).
func contractClient(t *testing.T) *http.Client {
	t.Helper()
	doc, err := contract.Load(context.Background(), web.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.NewChecker(doc, nil, func(err error) { t.Errorf("contract: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	return c.Client()
}

func TestLiveReadsOfATerminatedVPSSayItIsTerminated(t *testing.T) {
	e := newEnv(t)
	svc := e.newService(e.team.ID)
	if err := e.q.SetServiceStatus(context.Background(), queries.SetServiceStatusParams{ID: svc.ID, Status: "terminated"}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/status", "/traffic", "/backups"} {
		e.do("GET", "/api/services/"+svc.ID.String()+path, e.key, "").check(t, 409, "Service is terminated")
	}
}
