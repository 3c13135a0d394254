package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/adaptertest"
	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/adapters/tenantos/sim"
)

const (
	apiKey      = "test-key"
	taskTime    = 60 * time.Millisecond
	installTime = 280 * time.Millisecond // 40ms for each of the 7 OS phases
)

// newSim serves a simulator with the demo servers and returns it with the
// server's base URL.
func newSim(t *testing.T, tune ...func(*sim.Config)) (*sim.Server, string) {
	t.Helper()
	cfg := sim.Config{APIKeys: []string{apiKey}, TaskDuration: taskTime, InstallDuration: installTime, Seed: 1}
	for _, f := range tune {
		f(&cfg)
	}
	s := sim.New(cfg)
	for _, m := range sim.DemoServers() {
		s.AddServer(m)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts.URL
}

// answer is a decoded Tenantos answer: the success envelope or Laravel's
// error shape.
type answer struct {
	Status  int
	Result  json.RawMessage     `json:"result"`
	Message string              `json:"message"`
	Errors  map[string][]string `json:"errors"`
	Header  http.Header
}

// call sends a request with the API key (body as JSON when not nil).
func call(t *testing.T, method, url string, body any) answer {
	t.Helper()
	return callWith(t, method, url, body, http.Header{"Authorization": {"Bearer " + apiKey}})
}

func callWith(t *testing.T, method, url string, body any, hdr http.Header) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header = hdr.Clone()
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	a := answer{Status: res.StatusCode, Header: res.Header}
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatalf("%s %s: undecodable answer: %v", method, url, err)
	}
	return a
}

// result decodes an answer's result, failing unless it is a success.
func result[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if a.Status != http.StatusOK || a.Message != "success" {
		t.Fatalf("answer %d %q %v, want 200 success", a.Status, a.Message, a.Errors)
	}
	if err := json.Unmarshal(a.Result, &v); err != nil {
		t.Fatalf("result %s: %v", a.Result, err)
	}
	return v
}

type server struct {
	ID                    int      `json:"id"`
	ServerName            string   `json:"servername"`
	Hostname              string   `json:"hostname"`
	UserID                int      `json:"user_id"`
	OS                    string   `json:"os"`
	Tags                  []string `json:"tags"`
	SuspendedUserIDs      []int    `json:"suspendedUserIds"`
	IsSuspended           int      `json:"isSuspended"`
	PrimaryIP             string   `json:"primaryip"`
	ReinstallationRunning int      `json:"reinstallationRunning"`
	DiskwipeRunning       int      `json:"diskwipeRunning"`
	RescueBootRunning     int      `json:"rescueBootRunning"`
	CachedPowerstatus     string   `json:"cachedPowerstatus"`
	PowerProvider         struct {
		SupportedFeatures []string `json:"supportedFeatures"`
	} `json:"powerprovider"`
	Hardware struct {
		CPU    struct{ Model string } `json:"cpu"`
		Memory struct{ Value int }    `json:"memory"`
		Disk   struct{ Count int }    `json:"disk"`
	} `json:"detailedHardwareInformation"`
	IPAssignments []ipAssignment `json:"ipassignments"`
}

type ipAssignment struct {
	ID        int    `json:"id"`
	IP        string `json:"ip"`
	PrimaryIP int    `json:"primary_ip"`
	Subnet    struct {
		CIDR    int    `json:"cidr"`
		Subnet  string `json:"subnet"`
		Netmask string `json:"netmask"`
		Gateway string `json:"gw"`
		Type    string `json:"type"`
	} `json:"subnetinformation"`
}

type installStatus struct {
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	CanCancel int `json:"canCancelInstallation"`
	Step      int `json:"step"`
	Progress  []struct {
		Step        int    `json:"step"`
		Description string `json:"description"`
		Status      string `json:"status"`
	} `json:"installProgress"`
	ErrorMessage string `json:"errorMessage"`
}

func getServer(t *testing.T, url string, id int) server {
	t.Helper()
	return result[server](t, call(t, "GET", fmt.Sprintf("%s/api/servers/%d", url, id), nil))
}

func getStatus(t *testing.T, url string, id int) installStatus {
	t.Helper()
	return result[installStatus](t, call(t, "GET", fmt.Sprintf("%s/api/servers/%d/provisioning/getInstallStatus", url, id), nil))
}

func reinstall(id int, body map[string]any) (string, string, map[string]any) {
	return "POST", fmt.Sprintf("/api/servers/%d/provisioning/startReinstallation", id), body
}

func TestServersShowTheirRealFields(t *testing.T) {
	_, url := newSim(t)
	list := result[[]server](t, call(t, "GET", url+"/api/servers", nil))
	if len(list) != 4 {
		t.Fatalf("listed %d servers, want the 4 demo servers", len(list))
	}
	got := getServer(t, url, 1)
	if got.ID != 1 || got.ServerName != "srv-001" || got.Hostname != "srv-001.example.net" || got.UserID != 1 ||
		!reflect.DeepEqual(got.Tags, []string{"For Rent"}) || got.PrimaryIP != "10.10.10.30" || got.CachedPowerstatus != "online" ||
		got.ReinstallationRunning != 0 || got.DiskwipeRunning != 0 || len(got.IPAssignments) != 1 {
		t.Errorf("server 1 = %+v", got)
	}
	if got.Hardware.CPU.Model != "AMD Ryzen 9 3900XT" || got.Hardware.Memory.Value != 65536 || got.Hardware.Disk.Count != 2 {
		t.Errorf("hardware = %+v", got.Hardware)
	}
	if want := []string{"getPowerStatus", "setPowerOn", "setPowerOff", "setPowerReset", "setPowerCycle"}; !reflect.DeepEqual(got.PowerProvider.SupportedFeatures, want) {
		t.Errorf("supportedFeatures = %v, want %v", got.PowerProvider.SupportedFeatures, want)
	}
}

func TestUpdatedServerKeepsItsChanges(t *testing.T) {
	tests := []struct {
		name  string
		body  map[string]any
		check func(server) bool
	}{
		{"hostname", map[string]any{"hostname": "new.example.org"}, func(s server) bool { return s.Hostname == "new.example.org" }},
		{"owner and tags", map[string]any{"user_id": 12, "tags": []string{"Clients", "VIP"}},
			func(s server) bool { return s.UserID == 12 && reflect.DeepEqual(s.Tags, []string{"Clients", "VIP"}) }},
		{"suspend for the owner", map[string]any{"suspendUserIds": []int{8}},
			func(s server) bool { return reflect.DeepEqual(s.SuspendedUserIDs, []int{8}) && s.IsSuspended == 1 }},
		{"unsuspend", map[string]any{"suspendUserIds": []int{}},
			func(s server) bool { return len(s.SuspendedUserIDs) == 0 && s.IsSuspended == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := newSim(t)
			if tt.name == "unsuspend" {
				result[server](t, call(t, "PUT", url+"/api/servers/2", map[string]any{"suspendUserIds": []int{8}}))
			}
			if answered := result[server](t, call(t, "PUT", url+"/api/servers/2", tt.body)); !tt.check(answered) {
				t.Errorf("PUT answered %+v", answered)
			}
			if got := getServer(t, url, 2); !tt.check(got) {
				t.Errorf("afterwards the server is %+v", got)
			}
		})
	}
}

func TestSuspendPowerActionIsCarriedOut(t *testing.T) {
	_, url := newSim(t)
	call(t, "PUT", url+"/api/servers/2", map[string]any{"suspendUserIds": []int{8}, "suspendPowerAction": "setPowerOff"})
	adaptertest.Eventually(t, "power off after suspension", func() bool { return getServer(t, url, 2).CachedPowerstatus == "offline" })
}

func TestGetByTagsMatchesAllTags(t *testing.T) {
	_, url := newSim(t)
	tests := []struct {
		tags []string
		want []int
	}{
		{[]string{"For Rent"}, []int{1, 3}},
		{[]string{"Clients"}, []int{2, 4}},
		{[]string{"For Rent", "Clients"}, []int{}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.tags, "+"), func(t *testing.T) {
			list := result[[]server](t, call(t, "POST", url+"/api/servers/getByTags", map[string]any{"tags": tt.tags}))
			got := []int{}
			for _, s := range list {
				got = append(got, s.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got servers %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIPAssignmentsListTheServersAddresses(t *testing.T) {
	_, url := newSim(t)
	ips := result[[]ipAssignment](t, call(t, "GET", url+"/api/servers/2/ipassignments", nil))
	if len(ips) != 3 {
		t.Fatalf("got %d assignments, want 3", len(ips))
	}
	v4, v6 := ips[0], ips[2]
	if v4.ID == 0 || v4.IP != "10.10.10.31" || v4.PrimaryIP != 1 || v4.Subnet.Subnet != "10.10.10.0" || v4.Subnet.Netmask != "255.255.255.0" ||
		v4.Subnet.Gateway != "10.10.10.1" || v4.Subnet.Type != "v4" || ips[1].PrimaryIP != 0 {
		t.Errorf("v4 assignment = %+v", v4)
	}
	if v6.Subnet.Type != "v6" || v6.Subnet.Subnet != "2001:db8:10::" || v6.Subnet.CIDR != 64 {
		t.Errorf("v6 assignment = %+v", v6)
	}
}

func TestAddedIPAssignmentIsListedAndShown(t *testing.T) {
	tests := []struct {
		name string
		id   int
		body map[string]any
		want ipAssignment // ID not compared
		desc string
	}{
		{"v4 with defaults", 1, map[string]any{"ip": "10.10.20.5"},
			ipAssignment{IP: "10.10.20.5", Subnet: subnet(32, "10.10.20.5", "255.255.255.255", "", "v4")}, ""},
		{"v4 subnet with gateway", 2, map[string]any{"ip": "10.10.20.9", "cidr": 29, "gateway": "10.10.20.14", "description": "failover"},
			ipAssignment{IP: "10.10.20.9", Subnet: subnet(29, "10.10.20.8", "255.255.255.248", "10.10.20.14", "v4")}, "failover"},
		{"v6 with defaults", 3, map[string]any{"ip": "2001:db8:20::5"},
			ipAssignment{IP: "2001:db8:20::5", Subnet: subnet(128, "2001:db8:20::5", "", "", "v6")}, ""},
		{"cidr as a string", 1, map[string]any{"ip": "10.10.20.6", "cidr": "30"},
			ipAssignment{IP: "10.10.20.6", Subnet: subnet(30, "10.10.20.4", "255.255.255.252", "", "v4")}, ""},
		{"first address is primary", 5, map[string]any{"ip": "10.10.20.7", "cidr": 24, "gateway": "10.10.20.1"},
			ipAssignment{IP: "10.10.20.7", PrimaryIP: 1, Subnet: subnet(24, "10.10.20.0", "255.255.255.0", "10.10.20.1", "v4")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := newSim(t)
			s.AddServer(sim.Machine{ID: 5})
			path := fmt.Sprintf("%s/api/servers/%d/ipassignments", url, tt.id)
			added := result[ipAssignment](t, call(t, "POST", path, tt.body))
			got := added
			got.ID = 0
			if added.ID == 0 || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("added %+v, want %+v with an id", added, tt.want)
			}
			list := result[[]ipAssignment](t, call(t, "GET", path, nil))
			if len(list) == 0 || !reflect.DeepEqual(list[len(list)-1], added) {
				t.Errorf("listed %+v, want %+v last", list, added)
			}
			if m, _ := s.Server(tt.id); m.IPs[len(m.IPs)-1].Description != tt.desc {
				t.Errorf("description %q, want %q", m.IPs[len(m.IPs)-1].Description, tt.desc)
			}
			if srv := getServer(t, url, tt.id); srv.IPAssignments[len(srv.IPAssignments)-1].IP != tt.want.IP {
				t.Errorf("server view lists %+v", srv.IPAssignments)
			}
		})
	}
}

func subnet(cidr int, base, netmask, gw, kind string) (s struct {
	CIDR    int    `json:"cidr"`
	Subnet  string `json:"subnet"`
	Netmask string `json:"netmask"`
	Gateway string `json:"gw"`
	Type    string `json:"type"`
}) {
	s.CIDR, s.Subnet, s.Netmask, s.Gateway, s.Type = cidr, base, netmask, gw, kind
	return s
}

func TestIPAssignmentRefusals(t *testing.T) {
	tests := []struct {
		name, method, path string
		body               map[string]any
		status             int
		message            string
		field              string
	}{
		{"no ip", "POST", "/api/servers/1/ipassignments", map[string]any{}, 422, "The ip field is required.", "ip"},
		{"not an address", "POST", "/api/servers/1/ipassignments", map[string]any{"ip": "10.10.300.1"}, 422,
			"The ip field must be a valid IP address.", "ip"},
		{"cidr too wide for v4", "POST", "/api/servers/1/ipassignments", map[string]any{"ip": "10.10.20.5", "cidr": 33}, 422,
			"The cidr field must be between 1 and 32.", "cidr"},
		{"cidr not an integer", "POST", "/api/servers/1/ipassignments", map[string]any{"ip": "10.10.20.5", "cidr": "wide"}, 422,
			"The cidr field must be an integer.", "cidr"},
		{"gateway of another family", "POST", "/api/servers/1/ipassignments", map[string]any{"ip": "10.10.20.5", "gateway": "2001:db8::1"}, 422,
			"The gateway field must be a valid IP address.", "gateway"},
		{"address of another server", "POST", "/api/servers/1/ipassignments", map[string]any{"ip": "10.10.10.32"}, 400,
			"The IP address 10.10.10.32 is already assigned to a server.", ""},
		{"address of the same server", "POST", "/api/servers/2/ipassignments", map[string]any{"ip": "2001:db8:10::2", "cidr": 64}, 400,
			"The IP address 2001:db8:10::2 is already assigned to a server.", ""},
		{"unknown server", "POST", "/api/servers/99/ipassignments", map[string]any{"ip": "10.10.20.5"}, 404,
			`No query results for model [App\Models\Server] 99`, ""},
		{"delete unknown assignment", "DELETE", "/api/servers/1/ipassignments/999", nil, 404,
			`No query results for model [App\Models\IpAssignment] 999`, ""},
		{"delete another server's assignment", "DELETE", "/api/servers/1/ipassignments/201", nil, 404,
			`No query results for model [App\Models\IpAssignment] 201`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := newSim(t)
			var body any
			if tt.body != nil {
				body = tt.body
			}
			before := s.Servers()
			a := call(t, tt.method, url+tt.path, body)
			if a.Status != tt.status || a.Message != tt.message {
				t.Errorf("got %d %q, want %d %q", a.Status, a.Message, tt.status, tt.message)
			}
			if tt.field != "" && len(a.Errors[tt.field]) == 0 {
				t.Errorf("errors %v lack %q", a.Errors, tt.field)
			}
			if after := s.Servers(); !reflect.DeepEqual(before, after) {
				t.Errorf("a refusal changed the servers")
			}
		})
	}
}

func TestDeletedIPAssignmentIsGone(t *testing.T) {
	s, url := newSim(t)
	if got := result[string](t, call(t, "DELETE", url+"/api/servers/2/ipassignments/202", nil)); got != "ok" {
		t.Errorf("delete answered %q", got)
	}
	list := result[[]ipAssignment](t, call(t, "GET", url+"/api/servers/2/ipassignments", nil))
	if len(list) != 2 || list[0].ID != 201 || list[1].ID != 203 {
		t.Errorf("after deleting 202: %+v", list)
	}
	if a := call(t, "DELETE", url+"/api/servers/2/ipassignments/202", nil); a.Status != 404 {
		t.Errorf("second delete: %d %q, want 404", a.Status, a.Message)
	}
	// The address is free again.
	result[ipAssignment](t, call(t, "POST", url+"/api/servers/1/ipassignments", map[string]any{"ip": "10.10.10.32", "cidr": 24}))
	if n := s.CountCalls("ipassignments.delete", "2"); n != 2 {
		t.Errorf("CountCalls = %d, want 2", n)
	}
}

func TestRefusalsUseLaravelsErrorShape(t *testing.T) {
	tests := []struct {
		name, method, path string
		body               map[string]any
		status             int
		message            string
		field              string // a field of "errors" that must be set
	}{
		{"unknown server", "GET", "/api/servers/999", nil, 404, `No query results for model [App\Models\Server] 999`, ""},
		{"unknown route", "GET", "/api/nothing", nil, 404, "The route api/nothing could not be found.", ""},
		{"wrong method", "DELETE", "/api/servers/1/provisioning/getInstallStatus", nil, 405,
			"The DELETE method is not supported for route api/servers/1/provisioning/getInstallStatus. Supported methods: GET, HEAD.", ""},
		{"getByTags without tags", "POST", "/api/servers/getByTags", map[string]any{}, 422, "The tags field is required.", "tags"},
		{"tags not an array", "POST", "/api/servers/getByTags", map[string]any{"tags": "x"}, 422, "The tags field must be an array.", "tags"},
		{"user_id not an integer", "PUT", "/api/servers/1", map[string]any{"user_id": "eight"}, 422, "The user id field must be an integer.", "user_id"},
		{"missing profile and password", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{}, 422,
			"The profile id field is required. (and 1 more error)", "rootpassword"},
		{"unknown profile", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{"profileId": 77, "rootpassword": "secret123"}, 422,
			"The selected profile id is invalid.", "profileId"},
		{"unknown disk layout", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{"profileId": 1, "rootpassword": "secret123", "disklayoutId": 99}, 422,
			"The selected disklayout id is invalid.", "disklayoutId"},
		{"short password", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{"profileId": 1, "rootpassword": "short"}, 422,
			"The rootpassword field must be at least 8 characters.", "rootpassword"},
		{"unknown script", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{"profileId": 1, "rootpassword": "secret123", "runScripts": []int{5}}, 422,
			"The selected run scripts.0 is invalid.", "runScripts.0"},
		{"bad power action", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{"profileId": 1, "rootpassword": "secret123", "installPowerAction": "now"}, 422,
			"The selected install power action is invalid.", "installPowerAction"},
		{"bad hostname", "POST", "/api/servers/1/provisioning/startReinstallation", map[string]any{"profileId": 1, "rootpassword": "secret123", "hostname": "bad host"}, 422,
			"The hostname field must be a valid hostname.", "hostname"},
		{"bad console IP", "GET", "/api/servers/1/console/start", map[string]any{"authorizedIp": "10.0.0"}, 422,
			"The authorized ip field must be a valid IP address.", "authorizedIp"},
		{"bad stats mode", "POST", "/api/servers/1/stats/cpu/chart", map[string]any{}, 422, "The selected stats mode is invalid.", "statsMode"},
		{"bad stats range", "POST", "/api/servers/1/stats/cpu/graph", map[string]any{"predefined": "year"}, 422, "The selected predefined is invalid.", "predefined"},
		{"GET of an assignment", "GET", "/api/servers/2/ipassignments/201", nil, 405,
			"The GET method is not supported for route api/servers/2/ipassignments/201. Supported methods: DELETE.", ""},
		{"unknown power method", "GET", "/api/servers/1/power/setPowerDance", nil, 400,
			"The power method setPowerDance is not supported by the power provider of this server.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := newSim(t)
			var body any
			if tt.body != nil {
				body = tt.body
			}
			a := call(t, tt.method, url+tt.path, body)
			if a.Status != tt.status || a.Message != tt.message {
				t.Errorf("got %d %q, want %d %q", a.Status, a.Message, tt.status, tt.message)
			}
			if tt.field != "" && len(a.Errors[tt.field]) == 0 {
				t.Errorf("errors %v lack %q", a.Errors, tt.field)
			}
			if a.Result != nil {
				t.Errorf("a refusal carries result %s", a.Result)
			}
		})
	}
}

func TestBadKeyIsUnauthenticated(t *testing.T) {
	_, url := newSim(t)
	tests := map[string]http.Header{
		"no header":    {},
		"wrong key":    {"Authorization": {"Bearer nope"}},
		"wrong scheme": {"Authorization": {"Basic " + apiKey}},
	}
	for name, hdr := range tests {
		t.Run(name, func(t *testing.T) {
			a := callWith(t, "GET", url+"/api/servers/1", nil, hdr)
			if a.Status != 401 || a.Message != "Unauthenticated." {
				t.Errorf("got %d %q, want 401 Unauthenticated.", a.Status, a.Message)
			}
		})
	}
}

func powerStatus(t *testing.T, url string, id int) string {
	t.Helper()
	return result[string](t, call(t, "GET", fmt.Sprintf("%s/api/servers/%d/power/getPowerStatus", url, id), nil))
}

func TestPowerActionsChangeStateAfterTaskDuration(t *testing.T) {
	tests := []struct {
		method        string
		id            int
		during, after string
	}{
		{"setPowerOn", 3, "offline", "online"},
		{"setPowerOff", 1, "online", "offline"},
		{"setPowerReset", 1, "online", "online"},
		{"setPowerCycle", 1, "offline", "online"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			_, url := newSim(t)
			if got := result[string](t, call(t, "GET", fmt.Sprintf("%s/api/servers/%d/power/%s", url, tt.id, tt.method), nil)); got != "executed" {
				t.Errorf("result %q, want executed", got)
			}
			if got := powerStatus(t, url, tt.id); got != tt.during {
				t.Errorf("right after: %s, want %s", got, tt.during)
			}
			adaptertest.Eventually(t, "power "+tt.after, func() bool {
				return powerStatus(t, url, tt.id) == tt.after && getServer(t, url, tt.id).CachedPowerstatus == tt.after
			})
		})
	}
}

func TestReinstallRunsThroughPhasesAndInstallsTheOS(t *testing.T) {
	s, url := newSim(t)
	method, path, body := reinstall(3, map[string]any{"profileId": 1, "disklayoutId": 4, "rootpassword": "secret123",
		"hostname": "fresh.example.net", "sshkeys": []string{"ssh-ed25519 AAAA test"}, "runScripts": []int{2},
		"configure_all_ipvfour": true, "configure_all_ipvsix": false, "installPowerAction": "restartAndPxeBoot"})
	if got := result[string](t, call(t, method, url+path, body)); got != "ok" {
		t.Errorf("result %q, want ok", got)
	}
	if srv := getServer(t, url, 3); srv.ReinstallationRunning != 1 || srv.OS != "" {
		t.Errorf("while installing: reinstallationRunning %d, os %q", srv.ReinstallationRunning, srv.OS)
	}
	steps := map[int]bool{}
	var st installStatus
	adaptertest.Eventually(t, "install completed", func() bool {
		st = getStatus(t, url, 3)
		if st.Running == 1 {
			steps[st.Step] = true
		}
		return st.Completed == 1
	})
	if len(steps) < 2 {
		t.Errorf("saw steps %v while running, want progress through several", steps)
	}
	if st.Running != 0 || st.Step != 7 || len(st.Progress) != 7 || st.Progress[6].Status != "completed" ||
		st.Progress[4].Description != "Installing operating system" {
		t.Errorf("final status = %+v", st)
	}
	srv := getServer(t, url, 3)
	if srv.OS != "Debian 12" || srv.Hostname != "fresh.example.net" || srv.ReinstallationRunning != 0 || srv.CachedPowerstatus != "online" {
		t.Errorf("installed server = %+v", srv)
	}
	if n := s.CountInstalls(3); n != 1 {
		t.Errorf("CountInstalls = %d, want 1", n)
	}
}

func TestSecondReinstallWhileOneRunsIsRefused(t *testing.T) {
	s, url := newSim(t)
	method, path, body := reinstall(1, map[string]any{"profileId": 2, "rootpassword": "secret123"})
	result[string](t, call(t, method, url+path, body))
	a := call(t, method, url+path, body)
	if a.Status != 400 || a.Message != "A reinstallation is already running for this server." {
		t.Errorf("second start: %d %q", a.Status, a.Message)
	}
	if n := s.CountInstalls(1); n != 1 {
		t.Errorf("CountInstalls = %d, want 1", n)
	}
}

func TestReinstallOfSuspendedServerIsRefused(t *testing.T) {
	s, url := newSim(t)
	method, path, body := reinstall(4, map[string]any{"profileId": 1, "rootpassword": "secret123"})
	if a := call(t, method, url+path, body); a.Status != 403 || a.Message != "The server is suspended." {
		t.Errorf("got %d %q, want 403", a.Status, a.Message)
	}
	if n := s.CountInstalls(4); n != 0 {
		t.Errorf("CountInstalls = %d, want 0", n)
	}
}

func TestStoppedReinstallationIsCancelled(t *testing.T) {
	_, url := newSim(t)
	method, path, body := reinstall(1, map[string]any{"profileId": 3, "rootpassword": "secret123"})
	result[string](t, call(t, method, url+path, body))
	if got := result[string](t, call(t, "GET", url+"/api/servers/1/provisioning/stopReinstallation", nil)); got != "ok" {
		t.Errorf("stop answered %q", got)
	}
	st := getStatus(t, url, 1)
	if st.Running != 0 || st.Cancelled != 1 || st.Completed != 0 || st.CanCancel != 0 || st.Progress[len(st.Progress)-1].Status != "cancelled" {
		t.Errorf("status after stop = %+v", st)
	}
	time.Sleep(installTime + taskTime)
	if srv := getServer(t, url, 1); srv.OS != "Debian 12" || srv.ReinstallationRunning != 0 {
		t.Errorf("server after stop = %+v, want the old OS kept", srv)
	}
}

func TestRescueRunsUntilTheNextReset(t *testing.T) {
	_, url := newSim(t)
	method, path, body := reinstall(1, map[string]any{"profileId": 10, "rootpassword": "throwaway1"})
	result[string](t, call(t, method, url+path, body))
	if srv := getServer(t, url, 1); srv.RescueBootRunning != 1 || srv.ReinstallationRunning != 0 {
		t.Errorf("while booting: rescue %d, reinstall %d", srv.RescueBootRunning, srv.ReinstallationRunning)
	}
	adaptertest.Eventually(t, "rescue booted", func() bool { return getStatus(t, url, 1).Completed == 1 })
	if srv := getServer(t, url, 1); srv.RescueBootRunning != 1 || srv.OS != "Debian 12" {
		t.Errorf("in rescue: %+v, want rescue running and the OS untouched", srv)
	}
	result[string](t, call(t, "GET", url+"/api/servers/1/power/setPowerReset", nil))
	adaptertest.Eventually(t, "rescue left", func() bool { return getServer(t, url, 1).RescueBootRunning == 0 })
}

func TestDiskWipeErasesAndPowersOff(t *testing.T) {
	_, url := newSim(t)
	method, path, body := reinstall(1, map[string]any{"profileId": 20}) // a wipe takes no root password
	result[string](t, call(t, method, url+path, body))
	if srv := getServer(t, url, 1); srv.DiskwipeRunning != 1 {
		t.Errorf("diskwipeRunning = %d while wiping", srv.DiskwipeRunning)
	}
	adaptertest.Eventually(t, "wipe done", func() bool { return getStatus(t, url, 1).Completed == 1 })
	if srv := getServer(t, url, 1); srv.OS != "" || srv.CachedPowerstatus != "offline" || srv.DiskwipeRunning != 0 {
		t.Errorf("wiped server = %+v", srv)
	}
}

func TestProfilesListOSRescueAndDiskLayouts(t *testing.T) {
	_, url := newSim(t)
	type profile struct {
		ID          int    `json:"id"`
		Name        string `json:"name"`
		IsRescue    int    `json:"isRescue"`
		DiskLayouts []struct {
			ID int `json:"id"`
		} `json:"disklayouts"`
		Features map[string]int `json:"features"`
	}
	got := result[[]profile](t, call(t, "GET", url+"/api/servers/1/provisioning/getProfiles", nil))
	byID := map[int]profile{}
	for _, p := range got {
		byID[p.ID] = p
	}
	if p := byID[1]; p.Name != "Debian 12" || p.IsRescue != 0 || len(p.DiskLayouts) != 3 || p.Features["set_root_password"] != 1 {
		t.Errorf("profile 1 = %+v", p)
	}
	if p := byID[10]; p.IsRescue != 1 {
		t.Errorf("profile 10 = %+v, want the rescue system", p)
	}
}

func TestInstallStatusBeforeAnyInstallIsIdle(t *testing.T) {
	_, url := newSim(t)
	if st := getStatus(t, url, 2); st.Running != 0 || st.Completed != 0 || st.Step != 0 || len(st.Progress) != 0 {
		t.Errorf("status = %+v", st)
	}
}

// openConsole starts a console with body (and the X-Forwarded-For header
// when set), then opens its URL, and returns the open's status.
func openConsole(t *testing.T, url string, body map[string]any, forwardedFor string, wait time.Duration) int {
	t.Helper()
	var b any
	if body != nil {
		b = body
	}
	session := result[struct {
		Token     string `json:"token"`
		AccessURL string `json:"accessUrl"`
	}](t, call(t, "GET", url+"/api/servers/1/console/start", b))
	if len(session.Token) != 40 || session.AccessURL != url+"/console/"+session.Token {
		t.Errorf("session = %+v", session)
	}
	time.Sleep(wait)
	req, _ := http.NewRequest("GET", session.AccessURL, nil)
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == 200 && !strings.Contains(string(page), "noVNC") {
		t.Errorf("console page %q", page)
	}
	return res.StatusCode
}

func TestConsoleOpensOnlyFromTheAuthorizedIP(t *testing.T) {
	tests := []struct {
		name         string
		body         map[string]any
		forwardedFor string
		trustProxy   bool
		ttl, wait    time.Duration
		want         int
	}{
		{name: "authorized IP", body: map[string]any{"authorizedIp": "127.0.0.1", "consoleMode": "standard"}, want: 200},
		{name: "another IP", body: map[string]any{"authorizedIp": "10.9.9.9"}, want: 403},
		{name: "no IP binds the requester", want: 200},
		{name: "expired", body: map[string]any{"authorizedIp": "127.0.0.1"}, ttl: 30 * time.Millisecond, wait: 60 * time.Millisecond, want: 404},
		{name: "client behind a proxy", body: map[string]any{"authorizedIp": "203.0.113.7"}, forwardedFor: "203.0.113.7, 10.0.0.1", trustProxy: true, want: 200},
		{name: "forwarded-for ignored unless trusted", body: map[string]any{"authorizedIp": "203.0.113.7"}, forwardedFor: "203.0.113.7", want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := newSim(t, func(c *sim.Config) { c.ConsoleTTL = tt.ttl; c.TrustForwardedFor = tt.trustProxy })
			if got := openConsole(t, url, tt.body, tt.forwardedFor, tt.wait); got != tt.want {
				t.Errorf("opening the console answered %d, want %d", got, tt.want)
			}
		})
	}
}

func TestConsoleTakesAuthorizedIPFromTheQuery(t *testing.T) {
	_, url := newSim(t)
	a := call(t, "GET", url+"/api/servers/1/console/start?authorizedIp=198.51.100.4", nil)
	if a.Status != 200 {
		t.Fatalf("got %d %q", a.Status, a.Message)
	}
	var session struct{ AccessURL string }
	json.Unmarshal(a.Result, &session)
	res, err := http.Get(session.AccessURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Errorf("opened from 127.0.0.1 with %d, want 403 for a session bound to 198.51.100.4", res.StatusCode)
	}
}

func TestStatsAnswerPlausibleSeries(t *testing.T) {
	tests := []struct {
		category, mode, predefined string
		minPoints, maxPoints       int
		field                      string
	}{
		{"cpu", "graph", "1h", 12, 13, "usage"},
		{"cpu", "graph", "24h", 288, 289, "usage"},
		{"memory", "graph", "1h", 12, 13, "used"},
		{"diskio", "graph", "1h", 12, 13, "readBytes"},
		{"memory", "text", "14days", 15, 15, "date"},
	}
	for _, tt := range tests {
		t.Run(tt.category+"/"+tt.mode+"/"+tt.predefined, func(t *testing.T) {
			_, url := newSim(t)
			path := fmt.Sprintf("%s/api/servers/1/stats/%s/%s", url, tt.category, tt.mode)
			first := call(t, "POST", path, map[string]any{"predefined": tt.predefined})
			points := result[[]map[string]any](t, first)
			if len(points) < tt.minPoints || len(points) > tt.maxPoints {
				t.Fatalf("%d points, want %d to %d", len(points), tt.minPoints, tt.maxPoints)
			}
			for _, p := range points {
				if _, ok := p[tt.field]; !ok {
					t.Fatalf("point %v lacks %s", p, tt.field)
				}
				if u, ok := p["usage"].(float64); ok && (u < 0 || u > 100) {
					t.Fatalf("usage %v out of range", u)
				}
			}
			if again := call(t, "POST", path, map[string]any{"predefined": tt.predefined}); string(again.Result) != string(first.Result) {
				t.Errorf("a second call gave another series")
			}
		})
	}
}

func TestIPMIStatsFollowThePowerState(t *testing.T) {
	tests := []struct {
		name       string
		id         int
		state      string
		minW, maxW float64
		maxCPUTemp float64
		fans       bool
	}{
		{"online", 1, "on", 70, 220, 73, true},
		{"offline draws only the BMC", 3, "off", 6, 9, 26, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := newSim(t)
			path := fmt.Sprintf("%s/api/servers/%d/stats/ipmi/graph", url, tt.id)
			first := call(t, "POST", path, map[string]any{"predefined": "1h"})
			points := result[[]struct {
				Timestamp  string  `json:"timestamp"`
				PowerState string  `json:"powerState"`
				PowerWatts float64 `json:"powerWatts"`
				InletTemp  float64 `json:"inletTemp"`
				CPUTemp    float64 `json:"cpuTemp"`
				FanRPM     int     `json:"fanRpm"`
			}](t, first)
			if len(points) < 12 || len(points) > 13 {
				t.Fatalf("%d points, want 12 or 13", len(points))
			}
			for _, p := range points {
				if p.Timestamp == "" || p.PowerState != tt.state || p.PowerWatts < tt.minW || p.PowerWatts > tt.maxW ||
					p.InletTemp < 15 || p.InletTemp > 30 || p.CPUTemp < p.InletTemp || p.CPUTemp > tt.maxCPUTemp || (p.FanRPM > 0) != tt.fans {
					t.Fatalf("point %+v", p)
				}
			}
			if again := call(t, "POST", path, map[string]any{"predefined": "1h"}); string(again.Result) != string(first.Result) {
				t.Errorf("a second call gave another series")
			}
		})
	}
}

func TestIPMITextSummarizesEachDay(t *testing.T) {
	_, url := newSim(t)
	days := result[[]map[string]any](t, call(t, "POST", url+"/api/servers/1/stats/ipmi/text",
		map[string]any{"from": "2025-08-20T00:00:00", "to": "2025-08-22T23:59:59"}))
	if len(days) != 3 || days[0]["date"] != "2025-08-20" {
		t.Fatalf("days = %v", days)
	}
	for _, d := range days {
		watts, _ := d["powerWatts"].(float64)
		peak, _ := d["peak"].(float64)
		if d["powerState"] != "on" || watts <= 0 || peak < watts || d["inletTemp"] == nil || d["cpuTemp"] == nil || d["fanRpm"] == nil {
			t.Errorf("day %v", d)
		}
	}
	if a := call(t, "POST", url+"/api/servers/1/stats/ipmi/graph", map[string]any{"predefined": "year"}); a.Status != 422 {
		t.Errorf("ipmi with the network's ranges: %d, want 422", a.Status)
	}
}

func TestNetworkStatsArePerPort(t *testing.T) {
	_, url := newSim(t)
	ports := result[[]struct {
		Port  string           `json:"port"`
		Stats []map[string]any `json:"stats"`
	}](t, call(t, "POST", url+"/api/servers/2/stats/network/graph", map[string]any{"from": "2025-08-25T10:00:00", "to": "2025-08-25T11:00:00"}))
	if len(ports) != 1 || len(ports[0].Stats) != 13 || ports[0].Stats[0]["timestamp"] != "2025-08-25 10:00:00" || ports[0].Stats[0]["bytesIn"] == nil {
		t.Errorf("ports = %+v", ports)
	}
}

func TestScriptedStatusFaultHitsTheNextCallsOnly(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.get", Target: "1", Times: 2, Status: 500, Message: "BMC unreachable"})
	for i := range 2 {
		if a := call(t, "GET", url+"/api/servers/1", nil); a.Status != 500 || a.Message != "BMC unreachable" {
			t.Fatalf("call %d: %d %q, want 500 BMC unreachable", i+1, a.Status, a.Message)
		}
	}
	if a := call(t, "GET", url+"/api/servers/2", nil); a.Status != 200 {
		t.Errorf("another target was hit: %d", a.Status)
	}
	result[server](t, call(t, "GET", url+"/api/servers/1", nil))
	if n := s.CountCalls("servers.get", "1"); n != 3 {
		t.Errorf("CountCalls = %d, want 3", n)
	}
}

func TestRetryAfterHeaderIsSent(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.list", Status: 429, RetryAfter: 3 * time.Second})
	a := call(t, "GET", url+"/api/servers", nil)
	if a.Status != 429 || a.Header.Get("Retry-After") != "3" || a.Message != "Too Many Attempts." {
		t.Errorf("got %d %q with Retry-After %q", a.Status, a.Message, a.Header.Get("Retry-After"))
	}
}

func TestDropCarriesTheCallOutButLosesTheAnswer(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "provisioning.startReinstallation", Times: 1, Drop: true})
	req, _ := http.NewRequest("POST", url+"/api/servers/1/provisioning/startReinstallation",
		strings.NewReader(`{"profileId":1,"rootpassword":"secret123"}`))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			t.Fatal("the dropped call was answered in full")
		}
	}
	if n := s.CountInstalls(1); n != 1 {
		t.Errorf("CountInstalls = %d, want the reinstall carried out once", n)
	}
	if st := getStatus(t, url, 1); st.Running != 1 {
		t.Errorf("status = %+v, want the dropped call's install running", st)
	}
}

func TestHangLastsUntilTheClientGivesUp(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "servers.list", Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/servers", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
}

func TestTaskErrorFaultFailsTheReinstallAtAPhase(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "provisioning.startReinstallation", Times: 1, TaskError: "disk /dev/sda not found"})
	method, path, body := reinstall(3, map[string]any{"profileId": 2, "rootpassword": "secret123"})
	result[string](t, call(t, method, url+path, body))
	var st installStatus
	adaptertest.Eventually(t, "install failed", func() bool { st = getStatus(t, url, 3); return st.Running == 0 })
	if st.Failed != 1 || st.Completed != 0 || st.ErrorMessage != "disk /dev/sda not found" || st.Step != 4 ||
		st.Progress[3].Status != "failed" || st.Progress[3].Description != "Partitioning disks" {
		t.Errorf("status = %+v", st)
	}
	if srv := getServer(t, url, 3); srv.OS != "" || srv.ReinstallationRunning != 0 {
		t.Errorf("server = %+v, want no OS installed and nothing running", srv)
	}
}

func TestTaskErrorFaultLeavesPowerUnchanged(t *testing.T) {
	s, url := newSim(t)
	s.Inject(simkit.Fault{Op: "power.setPowerOn", Times: 1, TaskError: "IPMI: Unable to set Chassis Power Control to Up/On"})
	if got := result[string](t, call(t, "GET", url+"/api/servers/3/power/setPowerOn", nil)); got != "executed" {
		t.Errorf("result %q", got)
	}
	time.Sleep(3 * taskTime)
	if got := powerStatus(t, url, 3); got != "offline" {
		t.Errorf("power %s, want still offline", got)
	}
}

func TestRandomFaultsRepeatWithTheSameSeed(t *testing.T) {
	outcomes := func() string {
		s, url := newSim(t)
		s.SetRandomFaults(simkit.RandomFaults{Rate: 0.3})
		var b strings.Builder
		for range 40 {
			if a := call(t, "GET", url+"/api/servers/1", nil); a.Status == 503 && a.Message == "Service Unavailable" {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	first, second := outcomes(), outcomes()
	if first != second || !strings.Contains(first, "x") || !strings.Contains(first, ".") {
		t.Errorf("runs %s and %s: want the same mix of failures and successes", first, second)
	}
}

func TestCallLogRecordsOpsTargetsAndStatuses(t *testing.T) {
	_, url := newSim(t)
	// A fault added over the control endpoint, as `provisiond dev` does.
	res, err := http.Post(url+"/_sim/faults", "application/json", strings.NewReader(`{"op":"power.setPowerOff","status":502,"times":1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	call(t, "GET", url+"/api/servers/2", nil)
	call(t, "GET", url+"/api/servers/2/power/setPowerOff", nil)
	call(t, "GET", url+"/api/servers/77/provisioning/getProfiles", nil)
	callWith(t, "GET", url+"/api/servers", nil, http.Header{})
	res, err = http.Get(url + "/_sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var calls []simkit.Call
	if err := json.NewDecoder(res.Body).Decode(&calls); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls {
		got = append(got, fmt.Sprintf("%s %s %s %d", c.Method, c.Op, c.Target, c.Status))
	}
	want := []string{
		"GET servers.get 2 200",
		"GET power.setPowerOff 2 502",
		"GET provisioning.getProfiles 77 404",
		"GET servers.list  401",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("call log\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestServersAddedOverControlEndpointAreServed(t *testing.T) {
	_, url := newSim(t)
	res, err := http.Post(url+"/_sim/servers", "application/json", strings.NewReader(`{"id":50,"servername":"lab-50","tags":["Lab"]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if srv := getServer(t, url, 50); srv.ServerName != "lab-50" || srv.CachedPowerstatus != "online" || srv.Hardware.CPU.Model == "" {
		t.Errorf("added server = %+v", srv)
	}
}

func TestSaveAndLoadKeepServersAndEndInstallsUnderWay(t *testing.T) {
	s := sim.New(sim.Config{InstallDuration: time.Hour})
	for _, m := range sim.DemoServers() {
		s.AddServer(m)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	req, _ := http.NewRequest("POST", ts.URL+"/api/servers/1/provisioning/startReinstallation", strings.NewReader(`{"profileId":2,"rootpassword":"longenough"}`))
	req.Header.Set("Authorization", "Bearer tenantos-sim-key")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("startReinstallation: %v %v", res, err)
	}
	res.Body.Close()
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Server(1); m.OS != "Debian 12" {
		t.Errorf("the live server runs %q after Save; its install must go on", m.OS)
	}
	loaded := sim.New(sim.Config{})
	if err := loaded.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if m, _ := loaded.Server(1); m.OS != "Ubuntu 24.04" || loaded.CountInstalls(1) != 1 {
		t.Errorf("loaded server 1 runs %q after %d installs; want the install under way ended: Ubuntu 24.04 after 1", m.OS, loaded.CountInstalls(1))
	}
	if got := len(loaded.Servers()); got != len(sim.DemoServers()) {
		t.Errorf("%d servers loaded, want %d", got, len(sim.DemoServers()))
	}
	if err := loaded.Load(strings.NewReader(`{"version":2,"servers":[]}`)); err == nil {
		t.Error("a snapshot of another version was loaded")
	}
}
