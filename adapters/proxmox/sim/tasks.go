package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// task is a worker task as PVE runs it: it has a UPID from the moment it
// starts and an exit status once it stops.
type task struct {
	upid   string
	node   string
	typ    string
	id     string
	user   string
	pid    uint32
	pstart uint64 // clock ticks since the node booted
	// start and end are on the node's clock, as its task log and index
	// keep them; end is zero while the task runs.
	start time.Time
	end   time.Time
	exit  string
	timer *time.Timer
	log   []string
	spec  taskSpec
}

// taskSpec describes a task to start.
type taskSpec struct {
	node, typ, id, user string
	// d is how long the task runs; exit is its error ("" for success).
	d    time.Duration
	exit string
	// log are the lines the task writes as it runs; warnings end a
	// successful task in "WARNINGS: n" instead of "OK".
	log      []string
	warnings []string
	// onOK runs under the lock when the task ends well, before onEnd;
	// onEnd runs under the lock however it ends, with its exit status.
	onOK  func()
	onEnd func(exit string)
	// manual tasks do not end by themselves: the code that started them
	// calls finish (a VNC session ends when its websocket closes).
	manual bool
}

// startTask starts a task on a VM that ends after d with exit status exit
// ("" for OK), calling onOK under the lock when it ends well. The lock must
// be held.
func (s *Server) startTask(c *call, typ string, d time.Duration, exit string, onOK func()) *task {
	return s.callTask(c, taskSpec{node: c.node, typ: typ, id: strconv.Itoa(c.vmid), d: d, exit: exit, onOK: onOK})
}

// callTask starts the task an API call asks for: it runs as the call's
// user and prints the warning a TaskWarning fault gives the call, after
// its own. The lock must be held.
func (s *Server) callTask(c *call, sp taskSpec) *task {
	sp.user = c.user
	if c.taskWarning != "" {
		sp.warnings = append(slices.Clone(sp.warnings), c.taskWarning)
	}
	return s.runTask(sp)
}

// runTask starts the task sp describes; the lock must be held. Its UPID
// is PVE's "UPID:node:PID:PSTART:STARTTIME:type:id:user:" with the fields
// in upper-case hex as pve-common's upid_encode prints them ("%08X"
// each): PSTART has a 9th digit once the node has been up long enough,
// and STARTTIME is on the node's clock.
func (s *Server) runTask(sp taskSpec) *task {
	s.pid++
	now := s.nodeNow(sp.node)
	if sp.user == "" {
		sp.user = s.cfg.TokenID
	}
	t := &task{
		node: sp.node, typ: sp.typ, id: sp.id, user: sp.user,
		pid: s.pid, pstart: s.pstart(sp.node), start: now, spec: sp,
		log: slices.Clone(sp.log),
	}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", t.node, t.pid, t.pstart, uint32(now.Unix()), t.typ, t.id, t.user)
	s.tasks = append(s.tasks, t)
	if !s.closed && !sp.manual {
		t.timer = time.AfterFunc(sp.d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.finish(t, sp.exit)
		})
	}
	return t
}

// finish ends a running task: its hooks run, then its last log line is
// written. The lock must be held.
func (s *Server) finish(t *task, exit string) {
	if !t.end.IsZero() {
		return
	}
	t.end = s.nodeNow(t.node)
	if exit == "" && t.spec.onOK != nil {
		t.spec.onOK()
	}
	if t.spec.onEnd != nil {
		t.spec.onEnd(exit)
	}
	switch {
	case exit != "":
		t.exit = exit
		t.log = append(t.log, "TASK ERROR: "+exit)
	case len(t.spec.warnings) > 0:
		for _, w := range t.spec.warnings {
			t.log = append(t.log, "WARN: "+w)
		}
		t.exit = fmt.Sprintf("WARNINGS: %d", len(t.spec.warnings))
		t.log = append(t.log, "TASK "+t.exit)
	default:
		t.exit = "OK"
		t.log = append(t.log, "TASK OK")
	}
}

// CountTasks counts the tasks of a type ("qmstart", "qmshutdown", ...) that
// were started on vmid (any VM when zero): how often an action was actually
// carried out, however many calls asked for it.
func (s *Server) CountTasks(typ string, vmid int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tasks {
		if t.typ == typ && (vmid == 0 || t.id == strconv.Itoa(vmid)) {
			n++
		}
	}
	return n
}

// TaskView is a task as a test sees it.
type TaskView struct {
	UPID string
	Node string
	// Type is the worker type ("qmstart", "qmclone", "vzdump", "imgdel",
	// ...); ID is what it works on: a VMID, "VMID@STORAGE" for a backup
	// volume deleted, or empty.
	Type, ID string
	// User is who started it: the API token's "user@realm!name" or the
	// ticket's "user@realm".
	User string
	// Start and End are on the node's clock; End is zero while the task
	// runs.
	Start, End time.Time
	// Exit is its exit status ("OK", "WARNINGS: n" or the error), empty
	// while it runs.
	Exit string
	// Log is its log as GET .../log shows it, without line numbers.
	Log []string
}

// Tasks returns the tasks of a type (any when empty) that were started on
// vmid (any when zero; a backup volume's imgdel, "VMID@STORAGE", counts as
// its VM's), oldest first, so that a test can tell which tasks ran, as
// whom, and how they ended.
func (s *Server) Tasks(typ string, vmid int) []TaskView {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []TaskView
	for _, t := range s.tasks {
		id, _, _ := strings.Cut(t.id, "@")
		if (typ != "" && t.typ != typ) || (vmid != 0 && id != strconv.Itoa(vmid)) {
			continue
		}
		out = append(out, TaskView{UPID: t.upid, Node: t.node, Type: t.typ, ID: t.id, User: t.user,
			Start: t.start, End: t.end, Exit: t.exit, Log: slices.Clone(t.log)})
	}
	return out
}

// upidRE is pve-common's upid_decode pattern, which allows up to 9 hex
// digits for pstart (a node up for more than some 497 days has them).
var upidRE = regexp.MustCompile(`^UPID:([^:]+):[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:[^:]+:[^:]*:[^:]+:$`)

// task finds the call's task by the UPID in the path; the lock must be held.
func (s *Server) task(r *http.Request, c *call) (*task, error) {
	upid := r.PathValue("upid")
	m := upidRE.FindStringSubmatch(upid)
	if m == nil {
		return nil, paramError("upid", fmt.Sprintf("unable to parse worker upid '%s'", upid))
	}
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	for _, t := range s.tasks {
		if t.upid == upid && t.node == c.node {
			return t, nil
		}
	}
	return nil, serverError("no such task: unable to open file '/var/log/pve/tasks/%s' - No such file or directory", upid)
}

// taskInfo is the task as /tasks and /tasks/{upid}/status show it.
func (t *task) info(listing bool) map[string]any {
	m := map[string]any{
		"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
		"starttime": t.start.Unix(), "type": t.typ, "id": t.id, "user": t.user,
	}
	switch {
	case listing && !t.end.IsZero():
		m["endtime"], m["status"] = t.end.Unix(), t.exit
	case listing:
	case t.end.IsZero():
		m["status"] = "running"
	default:
		m["status"], m["exitstatus"] = "stopped", t.exit
	}
	return m
}

// onTask returns a handler that runs fn, under the lock, on the task the
// path names.
func (s *Server) onTask(fn func(*http.Request, *task) any) handler {
	return func(r *http.Request, c *call) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		t, err := s.task(r, c)
		if err != nil {
			return nil, err
		}
		return fn(r, t), nil
	}
}

func (s *Server) taskStatus(_ *http.Request, t *task) any { return t.info(false) }

func (s *Server) taskLog(r *http.Request, t *task) any {
	q := r.URL.Query()
	start, _ := strconv.Atoi(q.Get("start"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 50
	}
	lines := []map[string]any{}
	for i := start; i < len(t.log) && len(lines) < limit; i++ {
		lines = append(lines, map[string]any{"n": i + 1, "t": t.log[i]})
	}
	if len(lines) == 0 {
		lines = append(lines, map[string]any{"n": 1, "t": "no content"})
	}
	return lines
}

func (s *Server) taskStop(_ *http.Request, t *task) any {
	if t.timer != nil {
		t.timer.Stop()
	}
	s.finish(t, "interrupted by signal")
	return nil
}

// tasksList answers GET /nodes/{node}/tasks with PVE's filters: source
// (archive, the default, active or all), vmid, typefilter, since, until,
// errors, start and limit. Newest first.
func (s *Server) tasksList(r *http.Request, c *call) (any, error) {
	if err := s.knownNode(c.node); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	source := q.Get("source")
	if source == "" {
		source = "archive"
	}
	if !slices.Contains([]string{"archive", "active", "all"}, source) {
		return nil, paramError("source", fmt.Sprintf("value '%s' does not have a value in the enumeration 'archive, active, all'", source))
	}
	ints := map[string]int64{"vmid": 0, "since": 0, "until": 0, "start": 0, "limit": 50}
	for name := range ints {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, paramError(name, fmt.Sprintf("type check ('integer') failed - got '%s'", v))
			}
			ints[name] = n
		}
	}
	typ, onlyErrors := q.Get("typefilter"), q.Get("errors") == "1"
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for i := len(s.tasks) - 1; i >= 0; i-- {
		t := s.tasks[i]
		running := t.end.IsZero()
		switch {
		case t.node != c.node,
			source == "active" && !running,
			source == "archive" && running,
			ints["vmid"] != 0 && t.id != strconv.FormatInt(ints["vmid"], 10),
			typ != "" && t.typ != typ,
			ints["since"] != 0 && t.start.Unix() < ints["since"],
			ints["until"] != 0 && t.start.Unix() > ints["until"],
			onlyErrors && (running || t.exit == "OK"):
			continue
		}
		out = append(out, t.info(true))
	}
	from := min(int(ints["start"]), len(out))
	return out[from:min(len(out), from+int(ints["limit"]))], nil
}
