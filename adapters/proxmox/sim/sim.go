// Package sim is a Proxmox VE API simulator: an http.Handler that speaks the
// /api2/json wire protocol closely enough for github.com/luthermonson/go-proxmox
// to work against it unchanged, keeps VMs and tasks in memory, runs power
// operations as tasks that take real time, and lets tests inject faults and
// read the log of calls that arrived.
//
// Besides power operations it covers what VPS jobs need: clone, config
// (with pending changes, digests and cloud-init keys), disk resize, destroy,
// vzdump backups and restore, storage content (ISOs, backups, images),
// cluster resources, RRD data, nodes' clocks (uptime, which UPIDs' pstart
// counts, and a skew from ours) and VNC consoles over a websocket that
// speaks a small RFB server, behind PVE's ticket login.
//
// Control endpoints under /_sim/ (no token) expose the same controls over
// HTTP for `provisiond dev` and staging: simkit's calls and faults, and
// GET/POST /_sim/vms.
package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// Config configures a Server.
type Config struct {
	// Nodes are the cluster's node names; default pve1 and pve2.
	Nodes []string
	// TokenID ("user@realm!name") and TokenSecret are the one API token
	// the server accepts.
	TokenID     string
	TokenSecret string
	// TaskDuration is how long a power task runs; default 100ms. Clones,
	// backups and restores take three times as long.
	TaskDuration time.Duration
	// Seed seeds random faults, so that a failing run reproduces.
	Seed uint64
	// User ("user@realm") and Password log in through POST /access/ticket;
	// default root@pam with no password, which disables ticket login.
	User     string
	Password string
	// VNCConnectTimeout is how long a vncproxy session waits for its
	// websocket; default 10s as in PVE.
	VNCConnectTimeout time.Duration
	// NodeUptime is how long a node has been up when the server starts,
	// by node name; default ten days. Past some 497 days the pstart of
	// the node's UPIDs has 9 hex digits (see SetNodeUptime).
	NodeUptime map[string]time.Duration
	// NodeClockSkew is how far a node's clock is ahead of ours (behind
	// when negative), by node name; default none (see SetNodeClockSkew).
	NodeClockSkew map[string]time.Duration
}

// Server is a simulated Proxmox VE cluster. Its methods are safe for
// concurrent use. Faults and the call log are the embedded Kit's; a call's
// Target is its VMID.
type Server struct {
	*simkit.Kit
	cfg Config
	mux *http.ServeMux

	mu       sync.Mutex
	closed   bool
	vms      map[vmKey]*vmState
	tasks    []*task
	pid      uint32
	storages map[string][]*storage // by node
	vnc      map[int]*vncSession   // by port
	nextPort int
	macs     int    // MAC addresses handed out
	secret   []byte // signs tickets
	clocks   map[string]*nodeClock
}

type vmKey struct {
	node string
	vmid int
}

// New returns a Server for cfg with no VMs.
func New(cfg Config) *Server {
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = []string{"pve1", "pve2"}
	}
	if cfg.TaskDuration <= 0 {
		cfg.TaskDuration = 100 * time.Millisecond
	}
	if cfg.User == "" {
		cfg.User = "root@pam"
	}
	if cfg.VNCConnectTimeout <= 0 {
		cfg.VNCConnectTimeout = 10 * time.Second
	}
	s := &Server{
		Kit:      simkit.New(cfg.Seed),
		cfg:      cfg,
		mux:      http.NewServeMux(),
		vms:      map[vmKey]*vmState{},
		pid:      0x1000,
		storages: map[string][]*storage{},
		vnc:      map[int]*vncSession{},
		nextPort: 5900,
		secret:   []byte(fmt.Sprintf("sim-%d-%s", cfg.Seed, cfg.TokenSecret)),
	}
	for _, n := range cfg.Nodes {
		s.storages[n] = defaultStorages(n)
	}
	s.initClocks(time.Now())
	s.routes()
	return s
}

// Close stops running tasks' timers and releases hung requests.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.Kit.Close()
	for _, t := range s.tasks {
		if t.timer != nil {
			t.timer.Stop()
		}
	}
	for _, v := range s.vnc {
		v.close()
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

const prefix = "/api2/json"

// handler answers one API request with the value for "data" or an error.
type handler func(r *http.Request, c *call) (any, error)

// call is what a handler knows about the request beyond *http.Request.
type call struct {
	node string
	vmid int
	// user is who the request authenticated as: the token's
	// "user@realm!name" or the ticket's "user@realm".
	user string
	// taskError, when set by a fault, is the exit status of the task the
	// request starts.
	taskError string
	// taskWarning, when set by a fault, is a warning the task the request
	// starts prints: it does its work and ends "WARNINGS: 1".
	taskWarning string
}

func (s *Server) routes() {
	s.mux.HandleFunc("POST "+prefix+"/access/ticket", s.ticket)
	s.api("GET /version", "version", s.version)
	s.api("GET /nodes", "nodes", s.nodes)
	s.api("GET /nodes/{node}/status", "node.status", s.nodeStatus)
	s.api("GET /nodes/{node}/time", "node.time", s.nodeTime)
	s.api("GET /nodes/{node}/qemu", "qemu.list", s.qemuList)
	s.api("POST /nodes/{node}/qemu", "qemu.create", s.qemuCreate)
	s.api("DELETE /nodes/{node}/qemu/{vmid}", "destroy", s.destroy)
	s.api("GET /nodes/{node}/qemu/{vmid}/status/current", "status.current", s.onVM(statusCurrent))
	s.api("GET /nodes/{node}/qemu/{vmid}/config", "config.get", s.configGet)
	s.api("POST /nodes/{node}/qemu/{vmid}/config", "config.update", s.configUpdate(false))
	s.api("PUT /nodes/{node}/qemu/{vmid}/config", "config.set", s.configUpdate(true))
	s.api("GET /nodes/{node}/qemu/{vmid}/pending", "pending", s.onVM(pendingList))
	s.api("POST /nodes/{node}/qemu/{vmid}/clone", "clone", s.clone)
	s.api("PUT /nodes/{node}/qemu/{vmid}/resize", "resize", s.resize)
	s.api("GET /nodes/{node}/qemu/{vmid}/rrddata", "rrddata", s.rrdData)
	s.api("POST /nodes/{node}/qemu/{vmid}/agent/ping", "agent.ping", s.agentPing)
	s.api("POST /nodes/{node}/qemu/{vmid}/vncproxy", "vncproxy", s.vncProxy)
	s.mux.HandleFunc("GET "+prefix+"/nodes/{node}/qemu/{vmid}/vncwebsocket", s.vncWebsocket)
	for _, op := range powerOps {
		s.api("POST /nodes/{node}/qemu/{vmid}/status/"+op, op, s.power(op))
	}
	s.api("POST /nodes/{node}/vzdump", "vzdump", s.vzdump)
	s.api("GET /nodes/{node}/storage", "storage.list", s.storageList)
	s.api("GET /nodes/{node}/storage/{storage}/status", "storage.status", s.storageStatus)
	s.api("GET /nodes/{node}/storage/{storage}/content", "content.list", s.contentList)
	s.api("GET /nodes/{node}/storage/{storage}/content/{volume...}", "content.get", s.contentGet)
	s.api("DELETE /nodes/{node}/storage/{storage}/content/{volume...}", "content.delete", s.contentDelete)
	s.api("GET /nodes/{node}/tasks", "tasks.list", s.tasksList)
	s.api("GET /nodes/{node}/tasks/{upid}/status", "task.status", s.onTask(s.taskStatus))
	s.api("GET /nodes/{node}/tasks/{upid}/log", "task.log", s.onTask(s.taskLog))
	s.api("DELETE /nodes/{node}/tasks/{upid}", "task.stop", s.onTask(s.taskStop))
	s.api("GET /cluster/nextid", "nextid", s.nextID)
	s.api("GET /cluster/resources", "resources", s.resources)
	s.api("GET /cluster/status", "cluster.status", s.clusterStatus)
	s.mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, prefix)
		writeError(w, &apiError{Status: http.StatusNotImplemented,
			Reason: fmt.Sprintf("Method '%s %s' not implemented", r.Method, path)})
	})
	s.control()
}

// api registers an authenticated API endpoint under /api2/json, logs each
// call and applies injected faults before the handler runs.
func (s *Server) api(pattern, op string, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
		c := &call{node: r.PathValue("node")}
		idx := s.Begin(r, op, "")
		s.Finish(idx, s.serve(w, r, op, idx, c, h))
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, op string, idx int, c *call, h handler) int {
	f, status := s.admit(w, r, op, idx, c)
	if status != 0 || f == nil {
		return status
	}
	data, err := h(r, c)
	if err != nil {
		return writeError(w, err)
	}
	body, merr := json.Marshal(map[string]any{"data": data})
	if merr != nil {
		return writeError(w, &apiError{Status: http.StatusInternalServerError, Reason: merr.Error()})
	}
	if f.Drop {
		// The request was carried out; the client never learns of it.
		simkit.DropMidResponse(w, http.Header{"Content-Type": {"application/json;charset=UTF-8"}}, body)
		return http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return http.StatusOK
}

// admit authenticates the request, checks the vmid in its path and applies
// injected faults. It returns the fault to honour (nil when an answer was
// already written, or the client gave up) and the status written, if any.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, op string, idx int, c *call) (*simkit.Fault, int) {
	user, err := s.authenticate(r)
	if err != nil {
		return nil, writeError(w, err)
	}
	c.user = user
	if v := r.PathValue("vmid"); v != "" {
		id, err := strconv.Atoi(v)
		if err != nil || id < 100 || id > 999999999 {
			return nil, writeError(w, paramError("vmid", fmt.Sprintf("type check ('integer') failed - got '%s'", v)))
		}
		c.vmid = id
		s.SetTarget(idx, v)
	}
	f := s.Next(op, r.PathValue("vmid"))
	if !s.Wait(r.Context(), f) {
		return nil, 0
	}
	if f.Status >= 400 {
		msg := f.Message
		if msg == "" {
			msg = http.StatusText(f.Status)
		}
		return nil, writeError(w, &apiError{Status: f.Status, Reason: msg, RetryAfter: f.RetryAfter})
	}
	c.taskError, c.taskWarning = f.TaskError, f.TaskWarning
	return &f, 0
}

// authenticate accepts the "PVEAPIToken=user@realm!name=secret" header or
// a PVEAuthCookie ticket; with a ticket, every method but GET also needs
// the CSRFPreventionToken header, as pveproxy demands.
func (s *Server) authenticate(r *http.Request) (string, error) {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "PVEAPIToken="); ok {
		i := strings.LastIndexByte(v, '=')
		if i > 0 && v[:i] == s.cfg.TokenID && v[i+1:] == s.cfg.TokenSecret {
			return s.cfg.TokenID, nil
		}
		return "", &apiError{Status: http.StatusUnauthorized, Reason: "permission denied - invalid PVEAPIToken"}
	}
	if ck, err := r.Cookie("PVEAuthCookie"); err == nil {
		user, ok := s.verifyTicket(ck.Value)
		if !ok {
			return "", &apiError{Status: http.StatusUnauthorized, Reason: "permission denied - invalid PVE ticket"}
		}
		if r.Method != http.MethodGet && !s.verifyCSRF(r.Header.Get("CSRFPreventionToken"), user) {
			return "", &apiError{Status: http.StatusUnauthorized, Reason: "Permission denied - invalid csrf token"}
		}
		return user, nil
	}
	return "", &apiError{Status: http.StatusUnauthorized, Reason: "No ticket"}
}

// apiError is an error answer. PVE puts the message of a 500 in the status
// line's reason phrase and the per-parameter messages of a 400 in
// {"errors":{...}}.
type apiError struct {
	Status     int
	Reason     string
	Params     map[string]string
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Reason) }

func paramError(param, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Reason: "Parameter verification failed.",
		Params: map[string]string{param: msg}}
}

func serverError(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusInternalServerError, Reason: fmt.Sprintf(format, args...)}
}

// writeError writes err the way pveproxy does, with the message as the
// reason phrase, and returns the status written.
func writeError(w http.ResponseWriter, err error) int {
	e, ok := err.(*apiError)
	if !ok {
		e = serverError("%s", err.Error())
	}
	body := map[string]any{"data": nil, "message": e.Reason + "\n"}
	if len(e.Params) > 0 {
		body["errors"] = e.Params
	}
	b, _ := json.Marshal(body)
	hdr := http.Header{"Content-Type": {"application/json;charset=UTF-8"}}
	if e.RetryAfter > 0 {
		hdr.Set("Retry-After", simkit.RetryAfterSeconds(e.RetryAfter))
	}
	simkit.WriteStatusLine(w, e.Status, strings.ReplaceAll(e.Reason, "\n", " "), hdr, b)
	return e.Status
}
