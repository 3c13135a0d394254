package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
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
	pstart uint32
	start  time.Time
	end    time.Time // zero while running
	exit   string
	timer  *time.Timer
	log    []string
	spec   taskSpec
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
	return s.runTask(taskSpec{node: c.node, typ: typ, id: strconv.Itoa(c.vmid), user: c.user, d: d, exit: exit, onOK: onOK})
}

// runTask starts the task sp describes; the lock must be held.
func (s *Server) runTask(sp taskSpec) *task {
	s.pid++
	now := time.Now()
	if sp.user == "" {
		sp.user = s.cfg.TokenID
	}
	t := &task{
		node: sp.node, typ: sp.typ, id: sp.id, user: sp.user,
		pid: s.pid, pstart: uint32(now.UnixMilli() / 10), start: now, spec: sp,
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
	t.end = time.Now()
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

var upidRE = regexp.MustCompile(`^UPID:([^:]+):[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:[^:]+:[^:]*:[^:]+:$`)

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
