package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hostfleet/provisiond/web"
)

// client calls the API as the chaos team does, and as the platform (the
// checkout, billing) for what only a platform key may do: new services
// (for the team), suspensions and their end.
type client struct {
	hc               *http.Client
	base             string
	key, platformKey string
	team             string // the chaos team's id
}

// learnTeam asks the API whose the team key is.
func (c *client) learnTeam(ctx context.Context) error {
	a := c.do(ctx, http.MethodGet, "/api/me", "")
	if a.status != http.StatusOK {
		return fmt.Errorf("GET /api/me: %s %s", a.label(), a.errText())
	}
	c.team = str(obj(obj(a.body, "me"), "team"), "id")
	return nil
}

// answer is one API answer: its status (0 when none came) and body.
type answer struct {
	status int
	body   map[string]any
	err    error
}

// label names an answer for the tables: "202", "409 service_busy",
// "no answer".
func (a answer) label() string {
	switch {
	case a.status == 0:
		return "no answer"
	case a.status >= 400:
		if k, _ := a.body["errorKey"].(string); k != "" {
			return strconv.Itoa(a.status) + " " + k
		}
	}
	return strconv.Itoa(a.status)
}

func (a answer) errText() string {
	if a.err != nil {
		return a.err.Error()
	}
	s, _ := a.body["error"].(string)
	return s
}

func (c *client) do(ctx context.Context, method, path, body string) answer {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	key := c.key
	if web.PlatformRequest(method, path, []byte(body)) {
		key = c.platformKey
		if path == "/api/services" {
			var m map[string]any
			if json.Unmarshal([]byte(body), &m) == nil {
				m["teamId"] = c.team
				b, _ := json.Marshal(m)
				rd = bytes.NewReader(b)
			}
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("x-api-key", key)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	a := answer{status: res.StatusCode, err: err}
	json.Unmarshal(b, &a.body)
	return a
}

// obj returns the object at key of an answer's body.
func obj(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	return v
}

func str(m map[string]any, key string) string {
	v, _ := m[key].(string)
	return v
}

func num(m map[string]any, key string) int {
	v, _ := m[key].(float64)
	return int(v)
}

// sim talks to a simulator's /_sim/ control endpoints and, for Proxmox, to
// its API with the fleet's token.
type sim struct {
	hc    *http.Client
	base  string
	token string // "PVEAPIToken=..." for the Proxmox API
}

func (s *sim) control(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, b)
	}
	return nil
}

func (s *sim) get(ctx context.Context, path string, auth bool, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	if auth {
		req.Header.Set("Authorization", s.token)
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(out)
}

// simVM is a VM as GET /_sim/vms shows it.
type simVM struct {
	Node        string            `json:"node"`
	VMID        int               `json:"vmid"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	Paused      bool              `json:"paused"`
	Lock        string            `json:"lock"`
	Cores       int               `json:"cores"`
	MemoryMB    int               `json:"memoryMb"`
	DiskGB      int               `json:"diskGb"`
	Tags        []string          `json:"tags"`
	Template    bool              `json:"template"`
	Description string            `json:"description"`
	Config      map[string]string `json:"config"`
	SeedBackups int               `json:"seedBackups,omitempty"`
}

func (s *sim) vms(ctx context.Context) ([]simVM, error) {
	var out []simVM
	return out, s.get(ctx, "/_sim/vms", false, &out)
}

// gameServer is a server as the Pterodactyl simulator's GET /_sim/servers
// shows it.
type gameServer struct {
	ID         int    `json:"id"`
	ExternalID string `json:"externalId"`
	Identifier string `json:"identifier"`
	Status     string `json:"status"`
	State      string `json:"state"`
}

func (s *sim) servers(ctx context.Context) ([]gameServer, error) {
	var out []gameServer
	return out, s.get(ctx, "/_sim/servers", false, &out)
}

// pveTask is a task as PVE's task list shows it.
type pveTask struct {
	UPID   string `json:"upid"`
	Node   string `json:"node"`
	Type   string `json:"type"`
	ID     string `json:"id"`
	User   string `json:"user"`
	Status string `json:"status"`
	Start  int64  `json:"starttime"`
}

// tasks lists every task of every node, through the Proxmox API as the
// fleet's token.
func (s *sim) tasks(ctx context.Context) ([]pveTask, error) {
	var nodes struct {
		Data []struct {
			Node string `json:"node"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api2/json/nodes", true, &nodes); err != nil {
		return nil, err
	}
	var all []pveTask
	for _, n := range nodes.Data {
		var ts struct {
			Data []pveTask `json:"data"`
		}
		q := url.Values{"source": {"all"}, "limit": {"10000000"}}
		if err := s.get(ctx, "/api2/json/nodes/"+url.PathEscape(n.Node)+"/tasks?"+q.Encode(), true, &ts); err != nil {
			return nil, err
		}
		all = append(all, ts.Data...)
	}
	return all, nil
}

// taskLog returns a task's log lines.
func (s *sim) taskLog(ctx context.Context, t pveTask) ([]string, error) {
	var out struct {
		Data []struct {
			T string `json:"t"`
		} `json:"data"`
	}
	path := "/api2/json/nodes/" + url.PathEscape(t.Node) + "/tasks/" + url.PathEscape(t.UPID) + "/log?limit=1000"
	if err := s.get(ctx, path, true, &out); err != nil {
		return nil, err
	}
	lines := make([]string, len(out.Data))
	for i, l := range out.Data {
		lines[i] = l.T
	}
	return lines, nil
}

func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}}
}

// bmServer is a bare-metal server as the Tenantos simulator's GET
// /_sim/servers shows it (and POST /_sim/servers takes it).
type bmServer struct {
	ID               int      `json:"id"`
	ServerName       string   `json:"servername"`
	Tags             []string `json:"tags"`
	SuspendedUserIDs []int    `json:"suspendedUserIds"`
	Power            string   `json:"power,omitempty"`
	Rescue           bool     `json:"rescue"`
	OS               string   `json:"os,omitempty"`
}

func (s *sim) bmServers(ctx context.Context) ([]bmServer, error) {
	var out []bmServer
	return out, s.get(ctx, "/_sim/servers", false, &out)
}

// simCall is one call in a simulator's log (GET /_sim/calls): the status
// it was answered with, 200 too for an answer dropped after the call was
// carried out; 0 when the client gave up first.
type simCall struct {
	Time   time.Time `json:"time"`
	Op     string    `json:"op"`
	Target string    `json:"target"`
	Status int       `json:"status"`
}

func (s *sim) calls(ctx context.Context) ([]simCall, error) {
	var out []simCall
	return out, s.get(ctx, "/_sim/calls", false, &out)
}
