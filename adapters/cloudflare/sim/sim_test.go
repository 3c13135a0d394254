package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/dns"
	"github.com/cloudflare/cloudflare-go/v6/option"
	"github.com/cloudflare/cloudflare-go/v6/shared"
	"github.com/cloudflare/cloudflare-go/v6/zones"

	"github.com/hostfleet/provisiond/adapters/cloudflare/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

const (
	token  = "test-token-0123456789abcdefghijklmnopqrs"
	scoped = "scoped-token-0123456789abcdefghijklmnopq"
)

// fixture is a served simulator with two zones: example.test, which only
// token reaches, and other.test, which scoped reaches too.
type fixture struct {
	s           *sim.Server
	c           *cloudflare.Client
	url         string
	zone, other string
}

func newFixture(t *testing.T, cfg sim.Config) *fixture {
	t.Helper()
	if cfg.Tokens == nil {
		cfg.Tokens = map[string][]string{token: {sim.AllZones}, scoped: {"other.test"}}
	}
	cfg.Seed = 1
	s := sim.New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &fixture{s: s, c: client(ts.URL, token), url: ts.URL, zone: s.AddZone("example.test"), other: s.AddZone("other.test")}
}

func client(url, tok string) *cloudflare.Client {
	return cloudflare.NewClient(option.WithAPIToken(tok), option.WithBaseURL(url+"/client/v4/"),
		option.WithMaxRetries(0), option.WithRequestTimeout(2*time.Second))
}

// add creates a record through the SDK and fails the test if it cannot.
func (f *fixture) add(t *testing.T, body dns.RecordNewParamsBodyUnion) *dns.RecordResponse {
	t.Helper()
	rec, err := f.c.DNS.Records.New(context.Background(), dns.RecordNewParams{ZoneID: cloudflare.F(f.zone), Body: body})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return rec
}

func aRecord(name, content string) dns.ARecordParam {
	return dns.ARecordParam{Type: cloudflare.F(dns.ARecordTypeA), Name: cloudflare.F(name),
		Content: cloudflare.F(content), TTL: cloudflare.F(dns.TTL1)}
}

// wireError is one entry of "errors" as the wire has it.
type wireError struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Chain   []wireError `json:"error_chain"`
}

// wireEnvelope is a body as the wire has it.
type wireEnvelope struct {
	Success  *bool             `json:"success"`
	Errors   []wireError       `json:"errors"`
	Messages []json.RawMessage `json:"messages"`
	Result   json.RawMessage   `json:"result"`
}

// codes lists the error codes, each followed by its chain's.
func (e wireEnvelope) codes() []int {
	var out []int
	var walk func([]wireError)
	walk = func(errs []wireError) {
		for _, we := range errs {
			out = append(out, we.Code)
			walk(we.Chain)
		}
	}
	walk(e.Errors)
	return out
}

// raw sends a request with an Authorization header (none when empty) and
// returns the answer and its decoded envelope.
func raw(t *testing.T, method, url, auth, body string) (*http.Response, wireEnvelope) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var env wireEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("body %q is no envelope: %v", b, err)
	}
	return res, env
}

// apiError unwraps the SDK's error, failing the test when it is not one.
func apiError(t *testing.T, err error) *cloudflare.Error {
	t.Helper()
	var apiErr *cloudflare.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want a *cloudflare.Error", err)
	}
	return apiErr
}

func TestCreatedRecordCanBeFetched(t *testing.T) {
	tests := []struct {
		name                     string
		body                     dns.RecordNewParamsBodyUnion
		wantName, wantContent    string
		wantTTL                  float64
		wantProxiable, wantProxy bool
	}{
		{"A", dns.ARecordParam{Type: cloudflare.F(dns.ARecordTypeA), Name: cloudflare.F("www"),
			Content: cloudflare.F("192.0.2.10"), TTL: cloudflare.F(dns.TTL(300))},
			"www.example.test", "192.0.2.10", 300, true, false},
		{"AAAA", dns.AAAARecordParam{Type: cloudflare.F(dns.AAAARecordTypeAAAA), Name: cloudflare.F("www"),
			Content: cloudflare.F("2001:DB8:0::1"), TTL: cloudflare.F(dns.TTL1), Proxied: cloudflare.F(true)},
			"www.example.test", "2001:db8::1", 1, true, true},
		{"CNAME", dns.CNAMERecordParam{Type: cloudflare.F(dns.CNAMERecordTypeCNAME), Name: cloudflare.F("alias.example.test"),
			Content: cloudflare.F("www.example.test."), TTL: cloudflare.F(dns.TTL1)},
			"alias.example.test", "www.example.test", 1, true, false},
		{"TXT", dns.TXTRecordParam{Type: cloudflare.F(dns.TXTRecordTypeTXT), Name: cloudflare.F("@"),
			Content: cloudflare.F("v=spf1 -all"), TTL: cloudflare.F(dns.TTL(3600))},
			"example.test", "v=spf1 -all", 3600, false, false},
		{"MX", dns.MXRecordParam{Type: cloudflare.F(dns.MXRecordTypeMX), Name: cloudflare.F("@"),
			Content: cloudflare.F("mail.example.test"), Priority: cloudflare.F(10.0), TTL: cloudflare.F(dns.TTL1)},
			"example.test", "mail.example.test", 1, false, false},
		{"SRV", dns.SRVRecordParam{Type: cloudflare.F(dns.SRVRecordTypeSRV), Name: cloudflare.F("_minecraft._tcp.mc"),
			TTL: cloudflare.F(dns.TTL1), Data: cloudflare.F(dns.SRVRecordDataParam{Priority: cloudflare.F(0.0),
				Weight: cloudflare.F(5.0), Port: cloudflare.F(25565.0), Target: cloudflare.F("node.example.test")})},
			"_minecraft._tcp.mc.example.test", "0 5 25565 node.example.test", 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, sim.Config{})
			created := f.add(t, tt.body)
			if len(created.ID) != 32 || created.CreatedOn.IsZero() {
				t.Errorf("created id %q on %v, want 32 hex digits and a time", created.ID, created.CreatedOn)
			}
			got, err := f.c.DNS.Records.Get(context.Background(), created.ID, dns.RecordGetParams{ZoneID: cloudflare.F(f.zone)})
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tt.wantName || got.Content != tt.wantContent || float64(got.TTL) != tt.wantTTL ||
				got.Proxiable != tt.wantProxiable || got.Proxied != tt.wantProxy || string(got.Type) != tt.name {
				t.Errorf("got %s %s %q ttl %v proxiable %v proxied %v, want %s %s %q ttl %v proxiable %v proxied %v",
					got.Type, got.Name, got.Content, got.TTL, got.Proxiable, got.Proxied,
					tt.name, tt.wantName, tt.wantContent, tt.wantTTL, tt.wantProxiable, tt.wantProxy)
			}
			if rec, ok := f.s.Record(f.zone, created.ID); !ok || rec.Name != tt.wantName {
				t.Errorf("Record() = %+v, %v; want it kept under %s", rec, ok, tt.wantName)
			}
		})
	}
}

func TestTypeSpecificFieldsAreReturned(t *testing.T) {
	f := newFixture(t, sim.Config{})
	mx := f.add(t, dns.MXRecordParam{Type: cloudflare.F(dns.MXRecordTypeMX), Name: cloudflare.F("@"),
		Content: cloudflare.F("mail.example.test"), Priority: cloudflare.F(10.0), TTL: cloudflare.F(dns.TTL1)})
	if mx.Priority != 10 {
		t.Errorf("MX priority %v, want 10", mx.Priority)
	}
	srv := f.add(t, dns.SRVRecordParam{Type: cloudflare.F(dns.SRVRecordTypeSRV), Name: cloudflare.F("_sip._udp"),
		TTL: cloudflare.F(dns.TTL1), Data: cloudflare.F(dns.SRVRecordDataParam{Priority: cloudflare.F(10.0),
			Weight: cloudflare.F(60.0), Port: cloudflare.F(5060.0), Target: cloudflare.F("sip.example.test")})})
	data := srv.AsUnion().(dns.RecordResponseSRV).Data
	if data.Priority != 10 || data.Weight != 60 || data.Port != 5060 || data.Target != "sip.example.test" {
		t.Errorf("SRV data %+v, want 10 60 5060 sip.example.test", data)
	}
}

func TestNamesAreNormalizedWithinTheZone(t *testing.T) {
	tests := []struct{ name, want string }{
		{"www", "www.example.test"},
		{"@", "example.test"},
		{"WWW.Example.TEST.", "www.example.test"},
		{"*.apps", "*.apps.example.test"},
		// Like the real API, a name outside the zone is taken as relative.
		{"www.other.test", "www.other.test.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, sim.Config{})
			if got := f.add(t, aRecord(tt.name, "192.0.2.1")); got.Name != tt.want {
				t.Errorf("name %q, want %q", got.Name, tt.want)
			}
		})
	}
}

func TestUpdateOverwritesTheWholeRecord(t *testing.T) {
	f := newFixture(t, sim.Config{})
	body := aRecord("www", "192.0.2.1")
	body.Comment, body.Tags, body.TTL = cloudflare.F("web"), cloudflare.F([]string{"team:web"}), cloudflare.F(dns.TTL(600))
	created := f.add(t, body)
	got, err := f.c.DNS.Records.Update(context.Background(), created.ID, dns.RecordUpdateParams{
		ZoneID: cloudflare.F(f.zone), Body: dns.ARecordParam{Type: cloudflare.F(dns.ARecordTypeA),
			Name: cloudflare.F("www"), Content: cloudflare.F("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || got.Content != "192.0.2.2" || got.Comment != "" || got.TTL != 1 ||
		len(got.Tags.([]string)) != 0 || !got.CreatedOn.Equal(created.CreatedOn) {
		t.Errorf("after PUT: %s content %s comment %q ttl %v tags %v created %v; want the same record with only the new content",
			got.ID, got.Content, got.Comment, got.TTL, got.Tags, got.CreatedOn)
	}
}

func TestEditChangesOnlyTheGivenFields(t *testing.T) {
	f := newFixture(t, sim.Config{})
	body := aRecord("www", "192.0.2.1")
	body.Comment, body.TTL = cloudflare.F("web"), cloudflare.F(dns.TTL(600))
	created := f.add(t, body)
	got, err := f.c.DNS.Records.Edit(context.Background(), created.ID, dns.RecordEditParams{
		ZoneID: cloudflare.F(f.zone), Body: dns.ARecordParam{Content: cloudflare.F("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Content != "192.0.2.2" || got.Comment != "web" || got.TTL != 600 || got.Name != "www.example.test" ||
		got.ModifiedOn.Before(created.ModifiedOn) {
		t.Errorf("after PATCH: content %s comment %q ttl %v name %s modified %v; want only the content changed",
			got.Content, got.Comment, got.TTL, got.Name, got.ModifiedOn)
	}
}

func TestProxiedRecordTTLIsAutomatic(t *testing.T) {
	f := newFixture(t, sim.Config{})
	body := aRecord("www", "192.0.2.1")
	body.Proxied, body.TTL = cloudflare.F(true), cloudflare.F(dns.TTL(300))
	if got := f.add(t, body); got.TTL != 1 || !got.Proxied {
		t.Errorf("proxied %v with ttl %v, want proxied with ttl 1", got.Proxied, got.TTL)
	}
}

func TestDeletedRecordIsGone(t *testing.T) {
	f := newFixture(t, sim.Config{})
	created := f.add(t, aRecord("www", "192.0.2.1"))
	ctx := context.Background()
	res, err := f.c.DNS.Records.Delete(ctx, created.ID, dns.RecordDeleteParams{ZoneID: cloudflare.F(f.zone)})
	if err != nil || res.ID != created.ID {
		t.Fatalf("delete = %+v, %v; want the record's id", res, err)
	}
	_, err = f.c.DNS.Records.Get(ctx, created.ID, dns.RecordGetParams{ZoneID: cloudflare.F(f.zone)})
	if e := apiError(t, err); e.StatusCode != 404 || e.Errors[0].Code != 81044 {
		t.Errorf("get after delete: %d %d, want 404 81044", e.StatusCode, e.Errors[0].Code)
	}
	if recs := f.s.Records(f.zone); len(recs) != 0 {
		t.Errorf("Records() = %+v, want none", recs)
	}
}

func TestBatchRunsDeletesPatchesPutsThenPosts(t *testing.T) {
	f := newFixture(t, sim.Config{})
	old := f.add(t, aRecord("www", "192.0.2.1"))
	patched := f.add(t, aRecord("api", "192.0.2.2"))
	put := f.add(t, aRecord("cdn", "192.0.2.3"))
	put.Comment = "gone after the put"
	res, err := f.c.DNS.Records.Batch(context.Background(), dns.RecordBatchParams{
		ZoneID:  cloudflare.F(f.zone),
		Deletes: cloudflare.F([]dns.RecordBatchParamsDelete{{ID: cloudflare.F(old.ID)}}),
		Patches: cloudflare.F([]dns.BatchPatchUnionParam{dns.BatchPatchARecordParam{ID: cloudflare.F(patched.ID),
			ARecordParam: dns.ARecordParam{Content: cloudflare.F("192.0.2.20")}}}),
		Puts: cloudflare.F([]dns.BatchPutUnionParam{dns.BatchPutARecordParam{ID: cloudflare.F(put.ID),
			ARecordParam: aRecord("cdn", "192.0.2.30")}}),
		// Identical to the deleted record: it is refused unless the delete runs first.
		Posts: cloudflare.F([]dns.RecordBatchParamsPostUnion{aRecord("www", "192.0.2.1")}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deletes) != 1 || res.Deletes[0].ID != old.ID || len(res.Patches) != 1 || res.Patches[0].Content != "192.0.2.20" ||
		len(res.Puts) != 1 || res.Puts[0].Content != "192.0.2.30" || len(res.Posts) != 1 || res.Posts[0].ID == old.ID {
		t.Errorf("batch result %+v", res)
	}
	var contents []string
	for _, rec := range f.s.Records(f.zone) {
		contents = append(contents, rec.Name+"="+rec.Content)
	}
	want := []string{"api.example.test=192.0.2.20", "cdn.example.test=192.0.2.30", "www.example.test=192.0.2.1"}
	if !slices.Equal(contents, want) {
		t.Errorf("records %v, want %v", contents, want)
	}
}

func TestFailedBatchChangesNothing(t *testing.T) {
	f := newFixture(t, sim.Config{})
	old := f.add(t, aRecord("www", "192.0.2.1"))
	before := f.s.Records(f.zone)
	_, err := f.c.DNS.Records.Batch(context.Background(), dns.RecordBatchParams{
		ZoneID:  cloudflare.F(f.zone),
		Deletes: cloudflare.F([]dns.RecordBatchParamsDelete{{ID: cloudflare.F(old.ID)}}),
		Posts:   cloudflare.F([]dns.RecordBatchParamsPostUnion{aRecord("api", "192.0.2.2"), aRecord("bad", "not-an-ip")}),
	})
	if e := apiError(t, err); e.StatusCode != 400 || e.Errors[0].Code != 9005 {
		t.Errorf("batch: %d %d, want 400 9005", e.StatusCode, e.Errors[0].Code)
	}
	if after := f.s.Records(f.zone); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("records after a failed batch %+v, want %+v", after, before)
	}
}

func TestRefusalsUseTheRealErrorShape(t *testing.T) {
	unknownID := strings.Repeat("ab", 16)
	tests := []struct {
		name, method, path, body string
		setup                    []dns.RecordNewParamsBodyUnion
		wantStatus               int
		wantCodes                []int
	}{
		{name: "A with a bad IPv4", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"x","content":"300.1.1.1","ttl":1}`,
			wantStatus: 400, wantCodes: []int{9005}},
		{name: "AAAA with an IPv4", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"AAAA","name":"x","content":"192.0.2.1","ttl":1}`,
			wantStatus: 400, wantCodes: []int{9006}},
		{name: "CNAME to an address", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"CNAME","name":"x","content":"192.0.2.1","ttl":1}`,
			wantStatus: 400, wantCodes: []int{1004, 9007}},
		{name: "TTL below 60", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"x","content":"192.0.2.1","ttl":30}`,
			wantStatus: 400, wantCodes: []int{1004, 9021}},
		{name: "TTL above a day", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"x","content":"192.0.2.1","ttl":86401}`,
			wantStatus: 400, wantCodes: []int{1004, 9021}},
		{name: "proxied TXT", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"TXT","name":"x","content":"hi","ttl":1,"proxied":true}`,
			wantStatus: 400, wantCodes: []int{1004, 9004}},
		{name: "proxied private address", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"x","content":"10.0.0.1","ttl":1,"proxied":true}`,
			wantStatus: 400, wantCodes: []int{9003}},
		{name: "identical record", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"www","content":"192.0.2.1","ttl":300}`,
			setup: []dns.RecordNewParamsBodyUnion{aRecord("www", "192.0.2.1")}, wantStatus: 400, wantCodes: []int{81058}},
		{name: "CNAME onto an A", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"CNAME","name":"www","content":"example.test","ttl":1}`,
			setup: []dns.RecordNewParamsBodyUnion{aRecord("www", "192.0.2.1")}, wantStatus: 400, wantCodes: []int{81053}},
		{name: "A onto a CNAME", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"alias","content":"192.0.2.1","ttl":1}`,
			setup: []dns.RecordNewParamsBodyUnion{dns.CNAMERecordParam{Type: cloudflare.F(dns.CNAMERecordTypeCNAME),
				Name: cloudflare.F("alias"), Content: cloudflare.F("www.example.test"), TTL: cloudflare.F(dns.TTL1)}},
			wantStatus: 400, wantCodes: []int{81054}},
		{name: "unknown type", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"BOGUS","name":"x","content":"y","ttl":1}`,
			wantStatus: 400, wantCodes: []int{1004, 9020}},
		{name: "invalid name", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"bad name!","content":"192.0.2.1","ttl":1}`,
			wantStatus: 400, wantCodes: []int{1004, 9000}},
		{name: "SRV without data", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"SRV","name":"_sip._tcp","ttl":1}`,
			wantStatus: 400, wantCodes: []int{1004, 9101}},
		{name: "malformed JSON", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":`,
			wantStatus: 400, wantCodes: []int{9207}},
		{name: "TTL of the wrong type", method: "POST", path: "/zones/{zone}/dns_records", body: `{"type":"A","name":"x","content":"192.0.2.1","ttl":"300"}`,
			wantStatus: 400, wantCodes: []int{9207}},
		{name: "unknown record", method: "GET", path: "/zones/{zone}/dns_records/" + unknownID, wantStatus: 404, wantCodes: []int{81044}},
		{name: "unknown record edited", method: "PATCH", path: "/zones/{zone}/dns_records/" + unknownID, body: `{"content":"192.0.2.1"}`,
			wantStatus: 404, wantCodes: []int{81044}},
		{name: "malformed record id", method: "DELETE", path: "/zones/{zone}/dns_records/xyz", wantStatus: 400, wantCodes: []int{7003}},
		{name: "unknown zone", method: "GET", path: "/zones/" + unknownID, wantStatus: 400, wantCodes: []int{7003}},
		{name: "unknown route", method: "GET", path: "/nowhere", wantStatus: 400, wantCodes: []int{7000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, sim.Config{})
			for _, body := range tt.setup {
				f.add(t, body)
			}
			path := "/client/v4" + strings.ReplaceAll(tt.path, "{zone}", f.zone)
			res, env := raw(t, tt.method, f.url+path, "Bearer "+token, tt.body)
			if res.StatusCode != tt.wantStatus || !slices.Equal(env.codes(), tt.wantCodes) {
				t.Errorf("got %d %v (%+v), want %d %v", res.StatusCode, env.codes(), env.Errors, tt.wantStatus, tt.wantCodes)
			}
			if env.Success == nil || *env.Success || env.Messages == nil || string(env.Result) != "null" || env.Errors[0].Message == "" {
				t.Errorf("envelope %+v, want success false, messages [], result null and a message", env)
			}
		})
	}
}

func TestSDKSurfacesTheErrorCodes(t *testing.T) {
	f := newFixture(t, sim.Config{})
	body := aRecord("www", "192.0.2.1")
	body.TTL = cloudflare.F(dns.TTL(30))
	_, err := f.c.DNS.Records.New(context.Background(), dns.RecordNewParams{ZoneID: cloudflare.F(f.zone), Body: body})
	e := apiError(t, err)
	if e.StatusCode != 400 || e.Errors[0].Code != 1004 || e.Errors[0].Message != "DNS Validation Error" ||
		!strings.Contains(e.Errors[0].JSON.ExtraFields["error_chain"].Raw(), `"code":9021`) {
		t.Errorf("got %d %d %q chain %s, want 400 1004 with 9021 in its chain", e.StatusCode, e.Errors[0].Code,
			e.Errors[0].Message, e.Errors[0].JSON.ExtraFields["error_chain"].Raw())
	}
}

func TestAuthenticationRefusals(t *testing.T) {
	tests := []struct {
		name, auth string
		otherZone  bool
		wantStatus int
		wantCodes  []int
	}{
		{name: "no header", wantStatus: 400, wantCodes: []int{9106}},
		{name: "not a bearer token", auth: "Basic dXNlcjpwYXNz", wantStatus: 400, wantCodes: []int{6003, 6111}},
		{name: "too short a token", auth: "Bearer short", wantStatus: 400, wantCodes: []int{6003, 6111}},
		{name: "unknown token", auth: "Bearer " + strings.Repeat("x", 40), wantStatus: 403, wantCodes: []int{9109}},
		{name: "token without the zone", auth: "Bearer " + scoped, wantStatus: 403, wantCodes: []int{10000}},
		{name: "token with the zone", auth: "Bearer " + scoped, otherZone: true, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, sim.Config{})
			zone := f.zone
			if tt.otherZone {
				zone = f.other
			}
			res, env := raw(t, "GET", f.url+"/client/v4/zones/"+zone+"/dns_records", tt.auth, "")
			if res.StatusCode != tt.wantStatus || !slices.Equal(env.codes(), tt.wantCodes) {
				t.Errorf("got %d %v, want %d %v", res.StatusCode, env.codes(), tt.wantStatus, tt.wantCodes)
			}
		})
	}
}

func TestTokenListsOnlyTheZonesItReaches(t *testing.T) {
	f := newFixture(t, sim.Config{})
	page, err := client(f.url, scoped).Zones.List(context.Background(), zones.ZoneListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Result) != 1 || page.Result[0].ID != f.other || page.Result[0].Name != "other.test" {
		t.Errorf("zones %+v, want only other.test", page.Result)
	}
}

func TestZoneFiltersAndGet(t *testing.T) {
	f := newFixture(t, sim.Config{})
	ctx := context.Background()
	tests := []struct {
		name   string
		params zones.ZoneListParams
		want   []string
	}{
		{"all", zones.ZoneListParams{}, []string{"example.test", "other.test"}},
		{"by name", zones.ZoneListParams{Name: cloudflare.F("other.test")}, []string{"other.test"}},
		{"name operator", zones.ZoneListParams{Name: cloudflare.F("starts_with:exa")}, []string{"example.test"}},
		{"status", zones.ZoneListParams{Status: cloudflare.F(zones.ZoneListParamsStatusPending)}, nil},
		{"name descending", zones.ZoneListParams{Order: cloudflare.F(zones.ZoneListParamsOrderName),
			Direction: cloudflare.F(zones.ZoneListParamsDirectionDesc)}, []string{"other.test", "example.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := f.c.Zones.List(ctx, tt.params)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, z := range page.Result {
				got = append(got, z.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("zones %v, want %v", got, tt.want)
			}
		})
	}
	z, err := f.c.Zones.Get(ctx, zones.ZoneGetParams{ZoneID: cloudflare.F(f.zone)})
	if err != nil || z.ID != f.zone || z.Name != "example.test" || z.Status != zones.ZoneStatusActive || len(z.NameServers) != 2 {
		t.Errorf("get = %+v, %v; want example.test, active, with name servers", z, err)
	}
}

func TestRecordListFilters(t *testing.T) {
	f := newFixture(t, sim.Config{})
	proxied := aRecord("www", "192.0.2.1")
	proxied.Proxied = cloudflare.F(true)
	f.add(t, proxied)
	f.add(t, aRecord("mail", "192.0.2.2"))
	f.add(t, dns.TXTRecordParam{Type: cloudflare.F(dns.TXTRecordTypeTXT), Name: cloudflare.F("mail"),
		Content: cloudflare.F("v=spf1 -all"), TTL: cloudflare.F(dns.TTL1), Comment: cloudflare.F("spf")})
	tests := []struct {
		name   string
		params dns.RecordListParams
		want   []string // contents
	}{
		{"by type", dns.RecordListParams{Type: cloudflare.F(dns.RecordListParamsTypeA)}, []string{"192.0.2.2", "192.0.2.1"}},
		{"by exact name", dns.RecordListParams{Name: cloudflare.F(dns.RecordListParamsName{Exact: cloudflare.F("MAIL.example.test")})},
			[]string{"192.0.2.2", "v=spf1 -all"}},
		{"by name prefix", dns.RecordListParams{Name: cloudflare.F(dns.RecordListParamsName{Startswith: cloudflare.F("ww")})},
			[]string{"192.0.2.1"}},
		{"by content", dns.RecordListParams{Content: cloudflare.F(dns.RecordListParamsContent{Contains: cloudflare.F("spf1")})},
			[]string{"v=spf1 -all"}},
		{"by comment", dns.RecordListParams{Comment: cloudflare.F(dns.RecordListParamsComment{Exact: cloudflare.F("SPF")})},
			[]string{"v=spf1 -all"}},
		{"proxied", dns.RecordListParams{Proxied: cloudflare.F(true)}, []string{"192.0.2.1"}},
		{"all of two filters", dns.RecordListParams{Type: cloudflare.F(dns.RecordListParamsTypeA),
			Name: cloudflare.F(dns.RecordListParamsName{Exact: cloudflare.F("mail.example.test")})}, []string{"192.0.2.2"}},
		{"any of two filters", dns.RecordListParams{Match: cloudflare.F(dns.RecordListParamsMatchAny), Proxied: cloudflare.F(true),
			Type: cloudflare.F(dns.RecordListParamsTypeTXT)}, []string{"v=spf1 -all", "192.0.2.1"}},
		{"ordered by content, descending", dns.RecordListParams{Order: cloudflare.F(dns.RecordListParamsOrderContent),
			Direction: cloudflare.F(shared.SortDirectionDesc)}, []string{"v=spf1 -all", "192.0.2.2", "192.0.2.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.params.ZoneID = cloudflare.F(f.zone)
			page, err := f.c.DNS.Records.List(context.Background(), tt.params)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, rec := range page.Result {
				got = append(got, rec.Content)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("contents %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAutoPagerWalksEveryPage(t *testing.T) {
	f := newFixture(t, sim.Config{})
	for i := range 7 {
		f.add(t, aRecord(fmt.Sprintf("host%d", i), "192.0.2.1"))
	}
	f.s.ResetCalls()
	params := dns.RecordListParams{ZoneID: cloudflare.F(f.zone), PerPage: cloudflare.F(2.0)}
	first, err := f.c.DNS.Records.List(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if info := first.ResultInfo; info.Page != 1 || info.PerPage != 2 || !strings.Contains(info.JSON.RawJSON(), `"total_count":7`) {
		t.Errorf("result_info %s, want page 1 of 2 with total_count 7", info.JSON.RawJSON())
	}
	pager := f.c.DNS.Records.ListAutoPaging(context.Background(), params)
	var names []string
	for pager.Next() {
		names = append(names, pager.Current().Name)
	}
	if err := pager.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) != 7 || names[0] != "host0.example.test" || names[6] != "host6.example.test" {
		t.Errorf("auto-pager saw %v, want host0 to host6", names)
	}
	// One call for the first List, then four pages and the empty fifth.
	if n := f.s.CountCalls("records.list", f.zone); n != 6 {
		t.Errorf("records.list calls = %d, want 6", n)
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	f := newFixture(t, sim.Config{RatePerWindow: 2, Window: 300 * time.Millisecond})
	url := f.url + "/client/v4/zones/" + f.zone
	for range 2 {
		if res, _ := raw(t, "GET", url, "Bearer "+token, ""); res.StatusCode != 200 {
			t.Fatalf("call within the limit: %d", res.StatusCode)
		}
	}
	res, env := raw(t, "GET", url, "Bearer "+token, "")
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "1" || !slices.Equal(env.codes(), []int{971}) {
		t.Errorf("over the limit: %d Retry-After %q %v, want 429 Retry-After 1 [971]", res.StatusCode, res.Header.Get("Retry-After"), env.codes())
	}
	if _, err := f.c.Zones.Get(context.Background(), zones.ZoneGetParams{ZoneID: cloudflare.F(f.zone)}); apiError(t, err).StatusCode != 429 {
		t.Errorf("SDK call over the limit: %v, want 429", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if res, _ := raw(t, "GET", url, "Bearer "+token, ""); res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still limited after the window")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatusFaultAnswersInTheEnvelope(t *testing.T) {
	tests := []struct {
		name      string
		fault     simkit.Fault
		wantCode  int
		wantMsg   string
		wantRetry string
	}{
		{"plain status", simkit.Fault{Status: 503}, 503, "Service Unavailable", ""},
		{"Cloudflare code in the message", simkit.Fault{Status: 400, Message: "81057: Record already exists."}, 81057, "Record already exists.", ""},
		{"throttled with Retry-After", simkit.Fault{Status: 429, RetryAfter: 3 * time.Second}, 971,
			"Please wait and consider throttling your request speed", "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, sim.Config{})
			tt.fault.Op, tt.fault.Target, tt.fault.Times = "records.create", f.zone, 1
			f.s.Inject(tt.fault)
			_, err := f.c.DNS.Records.New(context.Background(), dns.RecordNewParams{ZoneID: cloudflare.F(f.zone), Body: aRecord("www", "192.0.2.1")})
			e := apiError(t, err)
			if e.StatusCode != tt.fault.Status || e.Errors[0].Code != int64(tt.wantCode) || e.Errors[0].Message != tt.wantMsg ||
				e.Response.Header.Get("Retry-After") != tt.wantRetry {
				t.Errorf("got %d %d %q Retry-After %q, want %d %d %q %q", e.StatusCode, e.Errors[0].Code, e.Errors[0].Message,
					e.Response.Header.Get("Retry-After"), tt.fault.Status, tt.wantCode, tt.wantMsg, tt.wantRetry)
			}
			if len(f.s.Records(f.zone)) != 0 {
				t.Error("the refused call created a record")
			}
			f.add(t, aRecord("www", "192.0.2.1"))
		})
	}
}

func TestDropCarriesTheCallOutButLosesTheAnswer(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.s.Inject(simkit.Fault{Op: "records.create", Times: 1, Drop: true})
	_, err := f.c.DNS.Records.New(context.Background(), dns.RecordNewParams{ZoneID: cloudflare.F(f.zone), Body: aRecord("www", "192.0.2.1")})
	var apiErr *cloudflare.Error
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want a broken connection", err)
	}
	if recs := f.s.Records(f.zone); len(recs) != 1 || recs[0].Name != "www.example.test" {
		t.Errorf("records %+v, want the dropped call's record", recs)
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.s.Inject(simkit.Fault{Op: "zones.get", Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := f.c.Zones.Get(ctx, zones.ZoneGetParams{ZoneID: cloudflare.F(f.zone)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
}

func TestLatencyDelaysTheAnswer(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.s.Inject(simkit.Fault{Op: "zones.get", Times: 1, Latency: 150 * time.Millisecond})
	start := time.Now()
	if _, err := f.c.Zones.Get(context.Background(), zones.ZoneGetParams{ZoneID: cloudflare.F(f.zone)}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered after %v, want at least 150ms", d)
	}
}

func TestRandomFaultsRepeatWithTheSameSeed(t *testing.T) {
	outcomes := func() string {
		f := newFixture(t, sim.Config{})
		f.s.SetRandomFaults(simkit.RandomFaults{Rate: 0.3})
		var b strings.Builder
		for range 40 {
			if res, _ := raw(t, "GET", f.url+"/client/v4/zones", "Bearer "+token, ""); res.StatusCode == 200 {
				b.WriteByte('.')
			} else {
				b.WriteByte('x')
			}
		}
		return b.String()
	}
	first, second := outcomes(), outcomes()
	if first != second || !strings.Contains(first, "x") || !strings.Contains(first, ".") {
		t.Errorf("runs %s and %s: want the same mix of failures and successes", first, second)
	}
}

func TestCallLogNamesOpsTargetsAndStatuses(t *testing.T) {
	f := newFixture(t, sim.Config{})
	created := f.add(t, aRecord("www", "192.0.2.1"))
	ctx := context.Background()
	f.c.DNS.Records.Get(ctx, created.ID, dns.RecordGetParams{ZoneID: cloudflare.F(f.zone)})
	missing := strings.Repeat("0", 32)
	f.c.DNS.Records.Delete(ctx, missing, dns.RecordDeleteParams{ZoneID: cloudflare.F(f.zone)})
	var got []string
	for _, c := range f.s.Calls() {
		got = append(got, fmt.Sprintf("%s %s %s %d", c.Method, c.Op, c.Target, c.Status))
	}
	want := []string{
		"POST records.create " + f.zone + " 200",
		"GET records.get " + created.ID + " 200",
		"DELETE records.delete " + missing + " 404",
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestControlEndpointsAddAndShowZones(t *testing.T) {
	f := newFixture(t, sim.Config{})
	body := `{"name":"new.test","records":[{"type":"A","name":"www","content":"192.0.2.9","ttl":1}]}`
	res, err := http.Post(f.url+"/_sim/zones", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var added struct{ ID string }
	json.NewDecoder(res.Body).Decode(&added)
	res.Body.Close()
	page, err := f.c.DNS.Records.List(context.Background(), dns.RecordListParams{ZoneID: cloudflare.F(added.ID)})
	if err != nil || len(page.Result) != 1 || page.Result[0].Name != "www.new.test" {
		t.Fatalf("records of the added zone = %+v, %v; want www.new.test", page, err)
	}
	res, err = http.Get(f.url + "/_sim/zones")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var all []sim.Zone
	json.NewDecoder(res.Body).Decode(&all)
	if len(all) != 3 || all[2].Name != "new.test" || len(all[2].Records) != 1 {
		t.Errorf("GET /_sim/zones = %+v, want the two zones and new.test with its record", all)
	}
}

func TestDemoZonesAreValid(t *testing.T) {
	s := sim.New(sim.Config{})
	defer s.Close()
	for _, z := range sim.DemoZones() {
		id := s.AddZone(z.Name)
		for _, rec := range z.Records {
			if _, err := s.AddRecord(id, rec); err != nil {
				t.Errorf("%s %s %s: %v", z.Name, rec.Type, rec.Name, err)
			}
		}
		if got := len(s.Records(id)); got != len(z.Records) {
			t.Errorf("%s has %d records, want %d", z.Name, got, len(z.Records))
		}
	}
}
