package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Source identifies what a snapshot is of: kopia's SourceInfo.
type Source struct {
	Host     string `json:"host"`
	UserName string `json:"userName"`
	Path     string `json:"path"`
}

// String is kopia's form: user@host:path, user@host, @host or (global).
func (s Source) String() string {
	switch {
	case s.Host == "" && s.UserName == "" && s.Path == "":
		return "(global)"
	case s.Path == "" && s.UserName == "":
		return "@" + s.Host
	case s.Path == "":
		return s.UserName + "@" + s.Host
	}
	return s.UserName + "@" + s.Host + ":" + s.Path
}

// Stats are a snapshot's upload statistics, with kopia's JSON names.
type Stats struct {
	TotalSize         int64 `json:"totalSize"`
	ExcludedTotalSize int64 `json:"excludedTotalSize"`
	FileCount         int32 `json:"fileCount"`
	CachedFiles       int32 `json:"cachedFiles"`
	NonCachedFiles    int32 `json:"nonCachedFiles"`
	DirCount          int32 `json:"dirCount"`
	ExcludedFileCount int32 `json:"excludedFileCount"`
	ExcludedDirCount  int32 `json:"excludedDirCount"`
	IgnoredErrorCount int32 `json:"ignoredErrorCount"`
	ErrorCount        int32 `json:"errorCount"`
}

// Entry is a snapshot's root entry: kopia's DirEntry.
type Entry struct {
	Name     string      `json:"name,omitempty"`
	Type     string      `json:"type,omitempty"` // "d" or "f"
	Mode     string      `json:"mode,omitempty"` // octal, "0755"
	Size     int64       `json:"size,omitempty"`
	ModTime  time.Time   `json:"mtime"`
	ObjectID string      `json:"obj"`
	Summary  *DirSummary `json:"summ,omitempty"`
}

// DirSummary sums up a directory tree: kopia's DirectorySummary.
type DirSummary struct {
	Size      int64        `json:"size"`
	Files     int64        `json:"files"`
	Symlinks  int64        `json:"symlinks"`
	Dirs      int64        `json:"dirs"`
	MaxTime   time.Time    `json:"maxTime"`
	NumFailed int          `json:"numFailed"`
	Errors    []EntryError `json:"errors,omitempty"`
}

// EntryError is an entry that could not be read.
type EntryError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// Snapshot is a snapshot manifest with kopia's JSON field names; times are
// UTC and marshal as RFC 3339 with nanoseconds.
type Snapshot struct {
	ID          string            `json:"id"`
	Source      Source            `json:"source"`
	Description string            `json:"description"`
	StartTime   time.Time         `json:"startTime"`
	EndTime     time.Time         `json:"endTime"`
	Stats       *Stats            `json:"stats,omitempty"`
	Incomplete  string            `json:"incomplete,omitempty"`
	RootEntry   Entry             `json:"rootEntry"`
	Tags        map[string]string `json:"tags,omitempty"`
	Pins        []string          `json:"pins,omitempty"`
	// RetentionReason is filled in by `snapshot list` only.
	RetentionReason []string `json:"retentionReason,omitempty"`
	// Repository is the path of the repository holding the snapshot.
	Repository string `json:"-"`
}

// snapshot is a stored manifest with the tree it captured, by path
// relative to the source ("" for a file source).
type snapshot struct {
	Snapshot
	tree map[string]fileInfo
}

// clone copies the manifest for output, without retention reasons.
func (sn *snapshot) clone() Snapshot {
	c := sn.Snapshot
	st := *sn.Stats
	c.Stats = &st
	c.Tags = maps.Clone(sn.Tags)
	c.Pins = slices.Clone(sn.Pins)
	if sm := sn.RootEntry.Summary; sm != nil {
		cs := *sm
		cs.Errors = slices.Clone(sm.Errors)
		c.RootEntry.Summary = &cs
	}
	return c
}

// Restore records one `snapshot restore`.
type Restore struct {
	SnapshotID string    `json:"snapshotId"`
	Source     Source    `json:"source"`
	Target     string    `json:"target"`
	Time       time.Time `json:"time"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`
}

// Snapshots returns every snapshot of every repository, oldest first.
func (s *Server) Snapshots() []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Snapshot
	for _, r := range s.repos {
		for _, sn := range r.snapshots {
			out = append(out, sn.clone())
		}
	}
	slices.SortFunc(out, func(a, b Snapshot) int { return a.StartTime.Compare(b.StartTime) })
	return out
}

// Restores returns the restores carried out, oldest first.
func (s *Server) Restores() []Restore {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.restores)
}

// dirExists tells whether p is a directory of the host; the lock must be
// held.
func (s *Server) dirExists(p string) bool {
	prefix := strings.TrimSuffix(p, "/") + "/"
	for f := range s.files {
		if strings.HasPrefix(f, prefix) {
			return true
		}
	}
	return false
}

// capture reads the tree at p, or reports that p does not exist; the lock
// must be held.
func (s *Server) capture(p string) (map[string]fileInfo, bool) {
	if f, ok := s.files[p]; ok && !strings.HasSuffix(p, "/") {
		return map[string]fileInfo{"": f}, true
	}
	prefix := strings.TrimSuffix(p, "/") + "/"
	tree := map[string]fileInfo{}
	found := false
	for f, info := range s.files {
		if rel, ok := strings.CutPrefix(f, prefix); ok {
			found = true
			if rel != "" {
				tree[rel] = info
			}
		}
	}
	return tree, found
}

// summarize builds the root entry and statistics of a tree; prev is the
// tree of the source's previous complete snapshot, whose unchanged files
// kopia's hash cache does not read again.
func summarize(p string, tree, prev map[string]fileInfo) (Entry, Stats) {
	h := sha256.New()
	if f, ok := tree[""]; ok {
		fmt.Fprintf(h, "%d %d", f.size, f.mtime.UnixNano())
		st := Stats{TotalSize: f.size, FileCount: 1, NonCachedFiles: 1}
		if pf, ok := prev[""]; ok && pf == f {
			st.CachedFiles, st.NonCachedFiles = 1, 0
		}
		return Entry{Name: path.Base(p), Type: "f", Mode: "0644", Size: f.size, ModTime: f.mtime,
			ObjectID: hex.EncodeToString(h.Sum(nil)[:16])}, st
	}
	var st Stats
	sum := &DirSummary{}
	dirs := map[string]bool{"": true}
	for _, rel := range slices.Sorted(maps.Keys(tree)) {
		f := tree[rel]
		fmt.Fprintf(h, "%s %d %d\n", rel, f.size, f.mtime.UnixNano())
		for d := path.Dir(strings.TrimSuffix(rel, "/")); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
		if strings.HasSuffix(rel, "/") {
			dirs[strings.TrimSuffix(rel, "/")] = true
			continue
		}
		st.TotalSize += f.size
		st.FileCount++
		if pf, ok := prev[rel]; ok && pf == f {
			st.CachedFiles++
		} else {
			st.NonCachedFiles++
		}
		if f.mtime.After(sum.MaxTime) {
			sum.MaxTime = f.mtime
		}
	}
	st.DirCount = int32(len(dirs))
	sum.Size, sum.Files, sum.Dirs = st.TotalSize, int64(st.FileCount), int64(st.DirCount)
	return Entry{Name: path.Base(p), Type: "d", Mode: "0755", ModTime: sum.MaxTime,
		ObjectID: "k" + hex.EncodeToString(h.Sum(nil)[:16]), Summary: sum}, st
}

// parseTags turns --tags k:v into kopia's stored tags, "tag:k": "v".
func parseTags(values []string) (map[string]string, error) {
	tags := map[string]string{}
	for _, kv := range values {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			//lint:ignore ST1005 kopia's own wording, which the adapter reads
			return nil, fmt.Errorf("Invalid tag format (%s). Requires <key>:<value>", kv)
		}
		if _, dup := tags["tag:"+k]; dup {
			//lint:ignore ST1005 kopia's own wording, which the adapter reads
			return nil, fmt.Errorf("Duplicate tag <key> found. (%s)", k)
		}
		tags["tag:"+k] = v
	}
	return tags, nil
}

// parseSource is kopia's ParseSourceInfo: (global), @host, user@host,
// user@host:path or a local path of the connection's user and host.
func (e *execution) parseSource(p string, c *connection) Source {
	at := strings.Index(p, "@")
	colon := strings.Index(p, ":")
	switch {
	case p == "(global)":
		return Source{}
	case at > 0 && (colon < 0 || colon < at+1):
		return Source{UserName: p[:at], Host: p[at+1:]}
	case at > 0:
		return Source{UserName: p[:at], Host: p[at+1 : colon], Path: p[colon+1:]}
	case at == 0 && len(p) > 1:
		return Source{Host: p[1:]}
	}
	return Source{Host: c.hostname, UserName: c.username, Path: e.abs(p)}
}

func (e *execution) snapshotCreate() int {
	sources := e.inv.args["source"]
	if len(sources) == 0 {
		return e.fail(errors.New("no snapshot sources"))
	}
	if len(e.inv.str("description")) > 1024 {
		return e.fail(errors.New("description too long"))
	}
	e.s.mu.Lock()
	c, r, err := e.open()
	e.s.mu.Unlock()
	if err != nil {
		return e.fail(err)
	}
	tags, err := parseTags(e.inv.flags["tags"])
	if err != nil {
		return e.fail(err)
	}
	var failures []string
	for _, src := range sources {
		if err := e.snapshotSource(c, r, Source{Host: c.hostname, UserName: c.username, Path: e.abs(src)}, tags); err != nil {
			failures = append(failures, err.Error())
		}
		if e.gone {
			return 1
		}
	}
	switch len(failures) {
	case 0:
		return 0
	case 1:
		return e.fail(errors.New(failures[0]))
	}
	return e.fail(fmt.Errorf("encountered %v errors:\n%v", len(failures), strings.Join(failures, "\n")))
}

// snapshotSource uploads one source. The upload runs for SnapshotDuration
// and completes even when the client goes away meanwhile, since kopia
// without a terminal does not notice; the manifest exists once it ends.
func (e *execution) snapshotSource(c *connection, r *repository, src Source, tags map[string]string) error {
	e.info("Snapshotting %v ...", src)
	s := e.s
	s.mu.Lock()
	tree, ok := s.capture(src.Path)
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("unable to get local filesystem entry: resolveSymlink: stat: lstat %s: no such file or directory", src.Path)
	}
	var prev map[string]fileInfo
	if last := r.latestComplete(src); last != nil {
		prev = last.tree
	}
	root, st := summarize(src.Path, tree, prev)
	if e.taskError != "" {
		// kopia records what it could not read and saves the manifest.
		failed := "."
		if names := slices.Sorted(maps.Keys(tree)); len(names) > 0 && names[0] != "" {
			failed = names[0]
		}
		st.ErrorCount = 1
		if root.Summary != nil {
			root.Summary.NumFailed = 1
			root.Summary.Errors = []EntryError{{Path: failed, Error: e.taskError}}
		}
		e.errorf("Error when processing %q: %s", failed, e.taskError)
	}
	sn := &snapshot{tree: tree, Snapshot: Snapshot{
		ID: s.randomHex(16), Source: src, Description: e.inv.str("description"),
		StartTime: time.Now().UTC(), Stats: &st, RootEntry: root, Repository: r.path,
	}}
	if len(tags) > 0 {
		sn.Tags = tags
	}
	if pins := slices.Compact(slices.Sorted(slices.Values(e.inv.flags["pin"]))); len(pins) > 0 {
		sn.Pins = pins
	}
	done := make(chan struct{})
	if !s.closed {
		s.timers = append(s.timers, time.AfterFunc(s.cfg.SnapshotDuration, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			sn.EndTime = time.Now().UTC()
			r.snapshots[sn.ID] = sn
			r.applyRetention(src)
			close(done)
		}))
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-e.ctx.Done():
		e.gone = true
		return nil
	case <-s.Done():
		e.gone = true
		return nil
	}
	if e.inv.boolean("json") {
		out := sn.clone()
		if !e.inv.boolean("json-verbose") {
			out.Stats = nil
		}
		b, _ := json.Marshal(out)
		e.stdout.Write(append(b, '\n'))
		return nil
	}
	e.info("Created snapshot with root %v and ID %v in %v", root.ObjectID, sn.ID, sn.EndTime.Sub(sn.StartTime).Truncate(time.Second))
	if root.Summary != nil && root.Summary.NumFailed > 0 {
		//lint:ignore ST1005 kopia's own wording, which the adapter reads
		return fmt.Errorf("Found %v fatal error(s) while snapshotting %v.", root.Summary.NumFailed, src)
	}
	return nil
}

// latestComplete is the source's last complete snapshot; the lock must be
// held.
func (r *repository) latestComplete(src Source) *snapshot {
	var last *snapshot
	for _, sn := range r.snapshots {
		if sn.Source == src && sn.Incomplete == "" && (last == nil || sn.StartTime.After(last.StartTime)) {
			last = sn
		}
	}
	return last
}

// applyRetention deletes the source's snapshots that its effective policy
// keeps for no reason and no pin holds, as kopia does after each
// snapshot; the lock must be held.
func (r *repository) applyRetention(src Source) {
	var group []*snapshot
	for _, sn := range r.snapshots {
		if sn.Source == src {
			group = append(group, sn)
		}
	}
	reasons := r.effectivePolicy(src).reasons(group)
	for _, sn := range group {
		if len(reasons[sn.ID]) == 0 && len(sn.Pins) == 0 {
			delete(r.snapshots, sn.ID)
		}
	}
}

// visible are the snapshots a connection may list: all of a directly
// connected repository, the user's own through the API server.
func (c *connection) visible(r *repository) []*snapshot {
	var out []*snapshot
	for _, sn := range r.snapshots {
		if c.server == "" || sn.Source.UserName == c.username && sn.Source.Host == c.hostname {
			out = append(out, sn)
		}
	}
	return out
}

func (e *execution) snapshotList() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	c, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	tags, err := parseTags(e.inv.flags["tags"])
	if err != nil {
		return e.fail(err)
	}
	var sources []Source
	if p := e.inv.arg("source"); p != "" {
		// kopia lists the source and every parent directory's source.
		src := e.parseSource(p, c)
		for {
			sources = append(sources, src)
			parent := path.Dir(src.Path)
			if src.Path == "" || parent == src.Path {
				break
			}
			src.Path = parent
		}
	}
	groups := map[Source][]*snapshot{}
	for _, sn := range c.visible(r) {
		if sources != nil && !slices.Contains(sources, sn.Source) || !hasTags(sn.Tags, tags) {
			continue
		}
		groups[sn.Source] = append(groups[sn.Source], sn)
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b Source) int { return strings.Compare(a.String(), b.String()) })
	l := e.jsonList()
	printed := false
	for _, src := range keys {
		group := groups[src]
		sortByTime(group, e.inv.boolean("reverse"))
		var n int
		fmt.Sscan(e.inv.str("max-results"), &n)
		if n > 0 && len(group) > n {
			group = group[len(group)-n:]
		}
		var reasons map[string][]string
		if e.inv.boolean("retention") {
			reasons = r.effectivePolicy(src).reasons(group)
		}
		if l != nil {
			for _, sn := range group {
				out := sn.clone()
				out.RetentionReason = reasons[sn.ID]
				l.emit(out)
			}
			continue
		}
		printed = e.listText(c, src, group, reasons) || printed
	}
	l.end()
	if l == nil && !printed && len(keys) > 0 && !e.inv.boolean("all") {
		e.info("No snapshots found. Pass --all to show snapshots from all users/hosts.\n")
	}
	return 0
}

// listText is the human form of `snapshot list`: the connection's own
// sources unless --all, complete snapshots unless --incomplete, and runs
// of snapshots with the same root as one row. It reports whether it
// printed the source.
func (e *execution) listText(c *connection, src Source, group []*snapshot, reasons map[string][]string) bool {
	if !e.inv.boolean("all") && (src.Host != c.hostname || src.UserName != c.username) {
		return false
	}
	if e.stdout.Len() > 0 {
		e.stdout.WriteString("\n")
	}
	fmt.Fprintf(&e.stdout, "%v\n", src)
	type row struct {
		first, last time.Time
		oid         string
		bits        []string
		reasons     []string
		pins        []string
		count       int
	}
	var rows []*row
	for _, sn := range group {
		if sn.Incomplete != "" && !e.inv.boolean("incomplete") {
			continue
		}
		if n := len(rows); n > 0 && rows[n-1].oid == sn.RootEntry.ObjectID {
			last := rows[n-1]
			last.count++
			last.last = sn.StartTime
			last.reasons = append(last.reasons, reasons[sn.ID]...)
			last.pins = append(last.pins, sn.Pins...)
			continue
		}
		mode := fs.FileMode(0o644)
		if sn.RootEntry.Type == "d" {
			mode = fs.ModeDir | 0o755
		}
		bits := []string{bytesString(sn.Stats.TotalSize), mode.String()}
		if e.inv.boolean("manifest-id") {
			bits = append(bits, "manifest:"+sn.ID)
		}
		if sm := sn.RootEntry.Summary; sm != nil {
			bits = append(bits, fmt.Sprintf("files:%v", sm.Files), fmt.Sprintf("dirs:%v", sm.Dirs))
			if sm.NumFailed > 0 {
				bits = append(bits, fmt.Sprintf("errors:%v", sm.NumFailed))
			}
		}
		rows = append(rows, &row{first: sn.StartTime, last: sn.StartTime, oid: sn.RootEntry.ObjectID, bits: bits,
			reasons: slices.Clone(reasons[sn.ID]), pins: slices.Clone(sn.Pins), count: 1})
	}
	for _, r := range rows {
		bits := r.bits
		if rs := compactReasons(r.reasons); len(rs) > 0 {
			bits = append(bits, "("+strings.Join(rs, ",")+")")
		}
		if pins := slices.Compact(slices.Sorted(slices.Values(r.pins))); len(pins) > 0 {
			bits = append(bits, "pins:"+strings.Join(pins, ","))
		}
		fmt.Fprintf(&e.stdout, "  %v %v %v\n", formatTimestamp(r.first), r.oid, strings.Join(bits, " "))
		if r.count > 1 {
			fmt.Fprintf(&e.stdout, "  + %v identical snapshots until %v\n", r.count-1, formatTimestamp(r.last))
		}
	}
	return true
}

// compactReasons is kopia's CompactRetentionReasons: runs of numbered
// reasons become ranges ("latest-1..3").
func compactReasons(reasons []string) []string {
	byKind := map[string][]int{}
	out := []string{}
	for _, r := range reasons {
		kind, num, _ := strings.Cut(r, "-")
		n, err := strconv.Atoi(num)
		if err != nil {
			out = append(out, r)
			continue
		}
		byKind[kind] = append(byKind[kind], n)
	}
	for kind, nums := range byKind {
		slices.Sort(nums)
		start, end := nums[0], nums[0]
		flush := func() {
			if start == end {
				out = append(out, fmt.Sprintf("%v-%v", kind, start))
			} else {
				out = append(out, fmt.Sprintf("%v-%v..%v", kind, start, end))
			}
		}
		for _, n := range nums[1:] {
			if n == end+1 {
				end = n
				continue
			}
			flush()
			start, end = n, n
		}
		flush()
	}
	sortRetentionTags(out)
	return out
}

func formatTimestamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") }

// bytesString is kopia's units.BytesString: base-10 units, one decimal.
func bytesString(b int64) string {
	f := float64(b)
	for _, unit := range []string{"B", "KB", "MB", "GB", "TB"} {
		if f < 900 || unit == "TB" {
			s := strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
			return s + " " + unit
		}
		f /= 1000
	}
	return ""
}

func hasTags(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// sortByTime is kopia's SortByTime: by start time, then end time.
func sortByTime(group []*snapshot, reverse bool) {
	sort.SliceStable(group, func(i, j int) bool {
		a, b := group[i], group[j]
		before := a.StartTime.Before(b.StartTime) || a.StartTime.Equal(b.StartTime) && a.EndTime.Before(b.EndTime)
		if reverse {
			return b.StartTime.Before(a.StartTime) || a.StartTime.Equal(b.StartTime) && b.EndTime.Before(a.EndTime)
		}
		return before
	})
}

// findSnapshot resolves a manifest id or a root object id (the latest
// snapshot with that root); the lock must be held.
func (c *connection) findSnapshot(r *repository, id string) *snapshot {
	var found *snapshot
	for _, sn := range c.visible(r) {
		if sn.ID == id {
			return sn
		}
		if sn.RootEntry.ObjectID == id && (found == nil || sn.StartTime.After(found.StartTime)) {
			found = sn
		}
	}
	return found
}

// isObjectID is kopia's object ID syntax: hex, with an optional one-letter
// g-z prefix.
func isObjectID(s string) bool {
	if len(s)%2 == 1 {
		if s[0] < 'g' || s[0] > 'z' {
			return false
		}
		s = s[1:]
	}
	_, err := hex.DecodeString(s)
	return s != "" && err == nil
}

func (e *execution) snapshotRestore() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	c, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	args := e.inv.args["sources"]
	var source, target string
	switch len(args) {
	case 1:
		src := e.parseSource(args[0], c)
		if src.Host != c.hostname || src.UserName != c.username {
			return e.fail(errors.New("unable to initialize output: the source must be a path in with the same username/hostname to be used as a target too"))
		}
		source, target = args[0], src.Path
	case 2:
		source, target = args[0], e.abs(args[1])
	default:
		return e.fail(errors.New("unable to initialize output: restore requires a source and targetpath or placeholders"))
	}
	e.info("Restoring to local filesystem (%v) with parallelism=8...", target)
	id, sub, _ := strings.Cut(source, "/")
	var sn *snapshot
	if isObjectID(id) {
		if sn = c.findSnapshot(r, id); sn == nil {
			return e.fail(fmt.Errorf("unable to get filesystem entry: object %v not found", id))
		}
	} else {
		// A path: the latest complete snapshot holding it.
		p := e.parseSource(source, c)
		for _, cand := range c.visible(r) {
			rel, ok := relPath(cand.Source, p)
			if ok && cand.Incomplete == "" && (sn == nil || cand.StartTime.After(sn.StartTime)) {
				sn, sub = cand, rel
			}
		}
		if sn == nil {
			return e.fail(fmt.Errorf("no snapshots contain data for %v", source))
		}
	}
	files, bytes, dirs := 0, int64(0), map[string]bool{"": true}
	sub = strings.Trim(sub, "/")
	for rel, f := range sn.tree {
		if sub != "" {
			inner, ok := strings.CutPrefix(rel, sub+"/")
			switch {
			case rel == sub:
				rel = ""
			case !ok:
				continue
			default:
				rel = inner
			}
		}
		dst := target
		if rel != "" {
			dst = target + "/" + rel
		}
		for d := path.Dir(strings.TrimSuffix(rel, "/")); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
		e.s.files[dst] = f
		if strings.HasSuffix(rel, "/") {
			dirs[rel] = true
			continue
		}
		files++
		bytes += f.size
	}
	if _, isFile := sn.tree[""]; isFile {
		dirs = map[string]bool{}
	}
	e.s.restores = append(e.s.restores, Restore{SnapshotID: sn.ID, Source: sn.Source, Target: target,
		Time: time.Now().UTC(), Files: files, Bytes: bytes})
	e.info("Restored %v files, %v directories and %v symbolic links (%v).\n", files, len(dirs), 0, bytesString(bytes))
	return 0
}

// relPath is where a path source lies inside a snapshot's source.
func relPath(snap, p Source) (string, bool) {
	if snap.Host != p.Host || snap.UserName != p.UserName {
		return "", false
	}
	if snap.Path == p.Path {
		return "", true
	}
	rel, ok := strings.CutPrefix(p.Path, strings.TrimSuffix(snap.Path, "/")+"/")
	return rel, ok
}

func (e *execution) snapshotDelete() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	c, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	confirm := e.inv.boolean("delete") || e.inv.boolean("unsafe-ignore-source")
	for _, id := range e.inv.args["id"] {
		var matched []*snapshot
		if sn, ok := r.snapshots[id]; ok && slices.Contains(c.visible(r), sn) {
			matched = []*snapshot{sn}
		} else {
			if !isObjectID(id) {
				return e.fail(fmt.Errorf("error deleting snapshots by root ID %v: invalid object ID: invalid content ID: %v", id, id))
			}
			for _, sn := range c.visible(r) {
				if sn.RootEntry.ObjectID == id {
					matched = append(matched, sn)
				}
			}
			if len(matched) == 0 {
				return e.fail(fmt.Errorf("error deleting snapshots by root ID %v: no snapshots matched %v", id, id))
			}
		}
		for _, sn := range matched {
			desc := fmt.Sprintf("snapshot %v of %v at %v", sn.ID, sn.Source, formatTimestamp(sn.StartTime))
			if !confirm {
				// kopia only says what it would do, and exits 0.
				e.info("Would delete %v (pass --delete to confirm)", desc)
				continue
			}
			e.info("Deleting %v...", desc)
			delete(r.snapshots, sn.ID)
		}
	}
	return 0
}
