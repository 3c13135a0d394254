package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// result is one invariant's outcome.
type result struct {
	n       int
	name    string
	ok      bool
	summary string
	details []string
	info    []string // shown whether it held or not
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// mutatingTasks are the Proxmox task types that change a VM or its
// backups: each must have been started by one step of one job.
var mutatingTasks = []string{"qmstart", "qmstop", "qmshutdown", "qmreboot", "qmreset", "qmpause", "qmsuspend", "qmresume",
	"qmclone", "qmconfig", "resize", "qmdestroy", "vzdump", "qmrestore", "qmcreate", "imgdel"}

// infraWords mark a job's error as one of our own infrastructure's making
// rather than the provider's or the request's.
var infraWords = []string{"lost from the queue", "archived", "lease", "timed out", "superseded", "interrupted"}

func check(ctx context.Context, c config, db *pgxpool.Pool, pve, ptero, bm *sim, st *runStats, reconcileStart time.Time) []result {
	return []result{
		checkFinal(ctx, c, db, st),
		checkTasks(ctx, c, db, pve, ptero, st),
		checkOrphansAndDrift(ctx, db, pve, ptero, reconcileStart),
		checkInfraFailures(ctx, db),
		checkLeases(ctx, db),
		checkBareMetalJobs(ctx, db),
		checkBareMetalServers(ctx, c, db, bm),
		checkBareMetalInstalls(ctx, c, db, bm, st),
		checkBareMetalDrift(ctx, db, bm, reconcileStart),
	}
}

// fail returns a result that could not be checked.
func failed(n int, name string, err error) result {
	return result{n: n, name: name, summary: "could not check: " + err.Error()}
}

// 1. Every accepted job ends within the settle time.
func checkFinal(ctx context.Context, c config, db *pgxpool.Pool, st *runStats) result {
	r := result{n: 1, name: fmt.Sprintf("every job ends (succeeded/failed/cancelled) within %s of the chaos", c.settle)}
	rows, err := db.Query(ctx, `SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	var parts []string
	total := 0
	for rows.Next() {
		var s string
		var n int
		rows.Scan(&s, &n)
		parts = append(parts, fmt.Sprintf("%s %d", s, n))
		total += n
	}
	rows.Close()
	rows, err = db.Query(ctx, `SELECT id::text, kind, status, step, attempts, updated_at, error, coalesce(run_at::text, '')
		FROM jobs WHERE status IN `+unfinished+` ORDER BY created_at`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var id, kind, status, step, errText, runAt string
		var attempts int
		var updated time.Time
		rows.Scan(&id, &kind, &status, &step, &attempts, &updated, &errText, &runAt)
		r.details = append(r.details, fmt.Sprintf("job %s %s: %s at step %q, %d attempts, unchanged since %s (%.0fs after the chaos), run_at %s, error %q",
			id, kind, status, step, attempts, updated.Format(time.TimeOnly), updated.Sub(st.chaosEnd).Seconds(), runAt, errText))
	}
	rows.Close()
	rows, err = db.Query(ctx, `SELECT id::text, kind, status, attempts, finished_at, error FROM jobs
		WHERE finished_at > $1 ORDER BY finished_at DESC LIMIT 3`, st.chaosEnd)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var id, kind, status, errText string
		var attempts int
		var finished time.Time
		rows.Scan(&id, &kind, &status, &attempts, &finished, &errText)
		r.info = append(r.info, fmt.Sprintf("ended %.1fs after the chaos: job %s %s, %s after %d attempts %s",
			finished.Sub(st.chaosEnd).Seconds(), id, kind, status, attempts, errText))
	}
	rows.Close()
	r.ok = st.quietAfter > 0 && len(r.details) == 0
	r.summary = fmt.Sprintf("%d jobs: %s", total, strings.Join(parts, ", "))
	if !r.ok {
		r.summary += fmt.Sprintf("; %d not ended", len(r.details))
	}
	return r
}

// 2. No provider action done twice or by the wrong job.
//
// Every mutating task our token started should be claimed in job_tasks by
// the step that started it (or adopted it after a lost answer). A task no
// job claimed is "done twice" when a job that was running when it started
// ran another task of the same type on the same VM (the same volume, for
// an imgdel) after it; otherwise the job saw its effect and went on, and it
// is only reported. A clone's task is listed under its template, which
// every clone shares, so a clone whose answer was lost is recognised by its
// effect and never claimed: up to one unclaimed clone per dropped clone
// answer is expected (a clone made twice leaves a VM behind, which
// invariant 3 finds).
func checkTasks(ctx context.Context, c config, db *pgxpool.Pool, pve, ptero *sim, st *runStats) result {
	r := result{n: 2, name: "no provider action done twice, none by the wrong job"}
	tasks, err := pve.tasks(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	type claim struct{ job, step, kind, service string }
	claims := map[string]claim{}
	rows, err := db.Query(ctx, `SELECT t.upid, t.job_id::text, t.step, j.kind, coalesce(j.service_id::text, '')
		FROM job_tasks t JOIN jobs j ON j.id = t.job_id`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var upid string
		var cl claim
		rows.Scan(&upid, &cl.job, &cl.step, &cl.kind, &cl.service)
		claims[upid] = cl
	}
	rows.Close()
	type span struct{ from, to time.Time }
	ran := map[string]span{} // when each job ran
	rows, err = db.Query(ctx, `SELECT id::text, started_at, coalesce(finished_at, now()) FROM jobs WHERE started_at IS NOT NULL`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var id string
		var sp span
		rows.Scan(&id, &sp.from, &sp.to)
		ran[id] = sp
	}
	rows.Close()
	reserved := map[string][]int{}
	rows, err = db.Query(ctx, `SELECT service_id::text, vmid FROM vmid_reservations`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var svc string
		var vmid int
		rows.Scan(&svc, &vmid)
		reserved[svc] = append(reserved[svc], vmid)
	}
	rows.Close()
	vms, err := pve.vms(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	templates := map[int]bool{}
	for _, vm := range vms {
		if vm.Template {
			templates[vm.VMID] = true
		}
	}
	var mine []pveTask
	for _, t := range tasks {
		if t.User == c.tokenID && slices.Contains(mutatingTasks, t.Type) {
			mine = append(mine, t)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].Start < mine[j].Start })
	// volume is what an imgdel removed, from its log.
	volume := func(t pveTask) string {
		if t.Type != "imgdel" {
			return ""
		}
		lines, _ := pve.taskLog(ctx, t)
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "Removed volume "); ok {
				return v
			}
		}
		return ""
	}

	var wrong, repeated, notRepeated []string
	unclaimedClones := 0
	type stepKey struct{ job, step, typ, vm string }
	done := map[stepKey][]string{}
	for _, t := range mine {
		vmid, _ := strconv.Atoi(strings.SplitN(t.ID, "@", 2)[0])
		started := time.Unix(t.Start, 0)
		desc := fmt.Sprintf("%s (%s on VM %s, started %s, %s)", t.UPID, t.Type, t.ID, started.Format(time.TimeOnly), cmpStr(t.Status, "running"))
		cl, ok := claims[t.UPID]
		if !ok {
			if t.Type == "qmclone" {
				unclaimedClones++
				notRepeated = append(notRepeated, "unclaimed clone "+desc)
				continue
			}
			var again []string
			for _, o := range mine {
				ocl, claimed := claims[o.UPID]
				sp := ran[ocl.job]
				if !claimed || o.UPID == t.UPID || o.Type != t.Type || o.ID != t.ID || o.Start < t.Start ||
					sp.from.After(started.Add(2*time.Second)) || sp.to.Before(started.Add(-2*time.Second)) {
					continue
				}
				if t.Type == "imgdel" && volume(o) != volume(t) {
					continue
				}
				again = append(again, fmt.Sprintf("%s by job %s (%s, step %s)", o.UPID, ocl.job, ocl.kind, ocl.step))
			}
			if len(again) > 0 {
				repeated = append(repeated, fmt.Sprintf("unclaimed task %s, then again: %s", desc, strings.Join(again, "; ")))
			} else {
				notRepeated = append(notRepeated, "unclaimed task "+desc+", not repeated")
			}
			continue
		}
		if !templates[vmid] && !slices.Contains(reserved[cl.service], vmid) {
			wrong = append(wrong, fmt.Sprintf("%s: %s on VM %d, claimed by job %s (%s, step %s) of service %s, whose VMIDs are %v",
				t.UPID, t.Type, vmid, cl.job, cl.kind, cl.step, cl.service, reserved[cl.service]))
		}
		if t.Type != "imgdel" && (t.Status == "OK" || strings.HasPrefix(t.Status, "WARNINGS")) {
			k := stepKey{cl.job, cl.step, t.Type, t.ID}
			done[k] = append(done[k], t.UPID)
		}
	}
	var twice []string
	for k, upids := range done {
		if len(upids) > 1 {
			twice = append(twice, fmt.Sprintf("job %s (%s) step %q: %d %s tasks on VM %s ended well: %s",
				k.job, claims[upids[0]].kind, k.step, len(upids), k.typ, k.vm, strings.Join(upids, ", ")))
		}
	}
	sort.Strings(twice)
	servers, err := ptero.servers(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	byExternal := map[string]int{}
	for _, g := range servers {
		if uuidRE.MatchString(g.ExternalID) { // the simulator's demo servers have names
			byExternal[g.ExternalID]++
		}
	}
	var dupGames []string
	for ext, n := range byExternal {
		if n > 1 {
			dupGames = append(dupGames, fmt.Sprintf("service %s has %d game servers (a create carried out twice)", ext, n))
		}
	}
	// A termination does not hold its service (it is scheduled long
	// before); it must still never act while another job changes it. It
	// acts from its first step on: attempts before that only waited.
	var overlaps []string
	rows, err = db.Query(ctx, `WITH t AS (
			SELECT id, service_id, finished_at,
			       (SELECT min(e.at) FROM job_events e WHERE e.job_id = jobs.id AND e.type = 'step') AS acted_at
			FROM jobs WHERE kind = 'service.terminate')
		SELECT t.id::text, j.id::text, j.kind, j.status, t.service_id::text,
			greatest(t.acted_at, j.started_at), least(t.finished_at, j.finished_at)
		FROM t JOIN jobs j ON j.service_id = t.service_id AND j.id <> t.id AND j.mutating
		WHERE t.acted_at IS NOT NULL AND j.started_at IS NOT NULL
		  AND t.acted_at < coalesce(j.finished_at, now()) AND j.started_at < coalesce(t.finished_at, now())
		ORDER BY 6`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var term, job, kind, status, svc string
		var from, to *time.Time
		rows.Scan(&term, &job, &kind, &status, &svc, &from, &to)
		overlaps = append(overlaps, fmt.Sprintf("termination %s of service %s ran while job %s (%s, ended %s) was running on it (%s to %s)",
			term, svc, job, kind, status, clock(from), clock(to)))
	}
	rows.Close()

	st.faults.mu.Lock()
	cloneDrops := st.faults.cloneDrops
	st.faults.mu.Unlock()
	extraClones := max(unclaimedClones-cloneDrops, 0)
	r.ok = len(repeated)+len(wrong)+len(twice)+len(dupGames)+len(overlaps)+extraClones == 0
	r.summary = fmt.Sprintf("%d mutating tasks by our token: done twice %d, on a VM not the job's %d, twice in one step %d; "+
		"duplicate game servers %d; terminations during another job %d; unclaimed clones %d (%d clone answers dropped); "+
		"other unclaimed, not repeated %d",
		len(mine), len(repeated), len(wrong), len(twice), len(dupGames), len(overlaps), unclaimedClones, cloneDrops,
		len(notRepeated)-unclaimedClones)
	r.details = append(r.details, repeated...)
	r.details = append(r.details, wrong...)
	r.details = append(r.details, twice...)
	r.details = append(r.details, dupGames...)
	r.details = append(r.details, overlaps...)
	if extraClones > 0 {
		r.details = append(r.details, fmt.Sprintf("%d unclaimed clones, more than the %d clone answers dropped", unclaimedClones, cloneDrops))
	}
	r.info = append(r.info, notRepeated...)
	return r
}

func clock(t *time.Time) string {
	if t == nil {
		return "now"
	}
	return t.Format("15:04:05.000")
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// 3. No orphaned VM or game server, and after two reconciliation rounds no
// live service whose provider state differs from the database.
func checkOrphansAndDrift(ctx context.Context, db *pgxpool.Pool, pve, ptero *sim, reconcileStart time.Time) result {
	r := result{n: 3, name: "no orphaned VMs or game servers; no drift after two reconcile rounds"}
	type svcRow struct {
		id, name, provider, status, reason string
		ref                                map[string]any
		drift                              []map[string]any
		power                              string
		verified                           *time.Time
	}
	services := map[string]*svcRow{}
	rows, err := db.Query(ctx, `SELECT id::text, name, provider, status, repair_reason, provider_ref, drift, power_state, verified_at FROM services`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		s := &svcRow{}
		var ref, drift []byte
		rows.Scan(&s.id, &s.name, &s.provider, &s.status, &s.reason, &ref, &drift, &s.power, &s.verified)
		json.Unmarshal(ref, &s.ref)
		json.Unmarshal(drift, &s.drift)
		services[s.id] = s
	}
	rows.Close()
	// A VPS whose last successful rescue job turned rescue on is meant to
	// boot the rescue system; the database keeps no other record of it.
	rescueWanted := map[string]bool{}
	rows, err = db.Query(ctx, `SELECT DISTINCT ON (service_id) service_id::text, (args->>'enable')::boolean FROM jobs
		WHERE kind = 'vps.rescue' AND status = 'succeeded' ORDER BY service_id, finished_at DESC`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var id string
		var on bool
		rows.Scan(&id, &on)
		rescueWanted[id] = on
	}
	rows.Close()
	vms, err := pve.vms(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	var orphans, drifted []string
	for _, vm := range vms {
		if vm.Template {
			continue
		}
		owner := ""
		for _, t := range vm.Tags {
			if id, ok := strings.CutPrefix(t, "svc-"); ok {
				owner = id
			}
		}
		if owner == "" {
			if _, after, ok := strings.Cut(vm.Description, "provisiond service "); ok && len(after) >= 36 {
				owner = after[:36]
			}
		}
		if owner == "" {
			continue
		}
		s := services[owner]
		switch {
		case s == nil:
			orphans = append(orphans, fmt.Sprintf("VM %d on %s (%s) carries the mark of service %s, which does not exist", vm.VMID, vm.Node, vm.Status, owner))
		case s.status == "terminated":
			orphans = append(orphans, fmt.Sprintf("VM %d on %s (%s) belongs to service %s (%s), which is terminated", vm.VMID, vm.Node, vm.Status, s.name, owner))
		case num(s.ref, "vmid") != vm.VMID:
			orphans = append(orphans, fmt.Sprintf("VM %d on %s (%s, lock %q) carries the mark of service %s (%s, %s), which points at %v",
				vm.VMID, vm.Node, vm.Status, vm.Lock, s.name, owner, s.status, s.ref))
		}
	}
	servers, err := ptero.servers(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	gameByService := map[string]gameServer{}
	for _, g := range servers {
		if !uuidRE.MatchString(g.ExternalID) {
			continue // not a service's (the simulator's demo servers)
		}
		s := services[g.ExternalID]
		switch {
		case s == nil:
			orphans = append(orphans, fmt.Sprintf("game server %d carries service %s, which does not exist", g.ID, g.ExternalID))
		case s.status == "terminated":
			orphans = append(orphans, fmt.Sprintf("game server %d belongs to service %s (%s), which is terminated", g.ID, s.name, s.id))
		case num(s.ref, "serverId") != g.ID:
			orphans = append(orphans, fmt.Sprintf("game server %d carries service %s (%s), which points at %v", g.ID, s.name, s.id, s.ref))
		default:
			gameByService[s.id] = g
		}
	}
	var repair, pending []string
	ids := make([]string, 0, len(services))
	for id := range services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := services[id]
		switch {
		case s.status == "needs_repair":
			repair = append(repair, fmt.Sprintf("%s (%s, %s): %s", s.name, s.id, s.provider, s.reason))
		case s.status == "pending":
			pending = append(pending, fmt.Sprintf("%s (%s, %s)", s.name, s.id, s.provider))
		case s.status != "active" && s.status != "suspended":
		default:
			s.drift = slices.DeleteFunc(s.drift, func(d map[string]any) bool {
				if str(d, "kind") != "rescue" || !rescueWanted[s.id] {
					return false
				}
				r.info = append(r.info, fmt.Sprintf("%s (%s): boots the rescue system, as its last rescue job asked (the reconciler counts it as drift)", s.name, s.id))
				return true
			})
			if len(s.drift) > 0 {
				b, _ := json.Marshal(s.drift)
				drifted = append(drifted, fmt.Sprintf("%s (%s, %s): drift %s", s.name, s.id, s.status, b))
			} else if s.verified == nil || s.verified.Before(reconcileStart) {
				drifted = append(drifted, fmt.Sprintf("%s (%s, %s): not verified by the reconcile rounds", s.name, s.id, s.status))
			}
			if s.provider != "pterodactyl" {
				continue
			}
			// The panel's own state, read apart from the reconciler.
			g, ok := gameByService[s.id]
			switch {
			case !ok:
				drifted = append(drifted, fmt.Sprintf("%s (%s, %s): no game server carries it", s.name, s.id, s.status))
			case (s.status == "suspended") != (g.Status == "suspended"):
				drifted = append(drifted, fmt.Sprintf("%s (%s): the service is %s, its game server's status is %q", s.name, s.id, s.status, g.Status))
			case map[string]string{"running": "running", "offline": "stopped"}[g.State] != s.power && s.power != "unknown":
				drifted = append(drifted, fmt.Sprintf("game %s (%s): recorded power %s, the server is %s", s.name, s.id, s.power, g.State))
			}
		}
	}
	r.ok = len(orphans) == 0 && len(drifted) == 0
	r.summary = fmt.Sprintf("orphans %d, drifted services %d; needs_repair %d, pending %d", len(orphans), len(drifted), len(repair), len(pending))
	r.details = append(orphans, drifted...)
	for _, s := range repair {
		r.info = append(r.info, "needs_repair: "+s)
	}
	for _, s := range pending {
		r.info = append(r.info, "still pending (provision never finished): "+s)
	}
	return r
}

// 4. No job failed for a reason of our own infrastructure.
func checkInfraFailures(ctx context.Context, db *pgxpool.Pool) result {
	r := result{n: 4, name: "no job failed for reasons of our own infrastructure"}
	rows, err := db.Query(ctx, `SELECT kind, error, count(*) FROM jobs WHERE status = 'failed' GROUP BY kind, error ORDER BY count(*) DESC, kind`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	total, infra := 0, 0
	for rows.Next() {
		var kind, errText string
		var n int
		rows.Scan(&kind, &errText, &n)
		total += n
		line := fmt.Sprintf("%3d × %s: %s", n, kind, errText)
		lower := strings.ToLower(errText)
		if slices.ContainsFunc(infraWords, func(w string) bool { return strings.Contains(lower, w) }) {
			infra += n
			r.details = append(r.details, line)
		} else {
			r.info = append(r.info, "failed (not ours): "+line)
		}
	}
	rows.Close()
	r.ok = infra == 0
	r.summary = fmt.Sprintf("%d failed jobs, %d of them for our infrastructure", total, infra)
	return r
}

// 5. After quiet, no lease is held (by a job that is not running).
func checkLeases(ctx context.Context, db *pgxpool.Pool) result {
	r := result{n: 5, name: "no lease held by a job that is not running"}
	rows, err := db.Query(ctx, `SELECT l.resource, l.holder::text, l.expires_at, l.expires_at < now(), coalesce(j.status, '(no such job)'), coalesce(j.kind, '')
		FROM leases l LEFT JOIN jobs j ON j.id = l.holder ORDER BY l.resource`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	held := 0
	for rows.Next() {
		var resource, holder, status, kind string
		var expires time.Time
		var expired bool
		rows.Scan(&resource, &holder, &expires, &expired, &status, &kind)
		held++
		r.details = append(r.details, fmt.Sprintf("lease %s held by job %s (%s, %s), expires %s (expired: %v)",
			resource, holder, kind, status, expires.Format(time.TimeOnly), expired))
	}
	rows.Close()
	r.ok = held == 0
	r.summary = fmt.Sprintf("%d leases left after quiet", held)
	return r
}

// report prints the run's table.
func report(out io.Writer, c config, d *driver, f *fleet, st *runStats, res []result) {
	mode := "full"
	if c.short {
		mode = "short"
	}
	fmt.Fprintf(out, "\n== chaos suite (%s run): %s of chaos, %d job requests sent of %d, seed %d, %d workers\n\n",
		mode, c.duration, d.sent, c.jobs, c.seed, c.workers)

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "requests\tsent\tanswers")
	for _, row := range d.requestRows() {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	d.mu.Lock()
	for l, e := range d.errSamples {
		fmt.Fprintf(out, "  e.g. %s: %s\n", l, firstLine(e, 160))
	}
	d.mu.Unlock()

	fmt.Fprintln(out)
	printJobsByKind(out, st.jobCounts)

	fmt.Fprintln(out)
	kills, started := f.counts()
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "chaos\t\n")
	fmt.Fprintf(tw, "worker processes SIGKILLed\t%d (%d workers started in all)\n", kills["worker"], started["worker"])
	fmt.Fprintf(tw, "API processes SIGKILLed\t%d\n", kills["api"])
	fmt.Fprintf(tw, "scheduler processes SIGKILLed\t%d\n", kills["scheduler"])
	fmt.Fprintf(tw, "Redis data losses\t%d (down %s each, back empty)\n", len(st.redisLosses), st.redisDown)
	fmt.Fprintf(tw, "processes that ended by themselves\t%d\n", len(f.unexpectedExits()))
	fmt.Fprintf(tw, "random provider faults\t%.0f%% of calls: 500 after %s\n", randomRate*100, randomLatency)
	fmt.Fprintf(tw, "scripted provider faults\t%s\n", strings.Join(st.faults.summary(), ", "))
	for i := range st.redisLosses {
		if st.resumeLag[i] > 0 {
			fmt.Fprintf(tw, "Redis restart → every job moving again\t%.1fs (%s unfinished at the restart)\n", st.resumeLag[i].Seconds(), plural(st.resumeJobs[i], "job"))
		} else {
			fmt.Fprintf(tw, "Redis restart → every job moving again\tnever: %d of %d jobs unchanged by the deadline\n", st.resumeLeft[i], st.resumeJobs[i])
		}
	}
	if st.quietAfter > 0 {
		fmt.Fprintf(tw, "chaos end → quiet (no job unfinished)\t%.1fs\n", st.quietAfter.Seconds())
	} else {
		fmt.Fprintf(tw, "chaos end → quiet (no job unfinished)\tnot within %s\n", c.settle)
	}
	tw.Flush()
	for _, u := range f.unexpectedExits() {
		fmt.Fprintf(out, "  ended by itself: %s\n", u)
	}
	fmt.Fprintln(out, "\nevents")
	for _, e := range st.events {
		fmt.Fprintf(out, "  %s\n", e)
	}
	fmt.Fprintln(out, "\nprovisiond reconcile (after quiet)")
	for i, r := range st.reconciles {
		fmt.Fprintf(out, "  round %d: %s\n", i+1, strings.ReplaceAll(oneLine(r), "\n", "; "))
	}

	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tinvariant\tresult\tdetail")
	failedN := 0
	for _, r := range res {
		verdict := "PASS"
		if !r.ok {
			verdict = "FAIL"
			failedN++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.n, r.name, verdict, r.summary)
	}
	tw.Flush()
	for _, r := range res {
		if len(r.details) == 0 && len(r.info) == 0 {
			continue
		}
		fmt.Fprintf(out, "\ninvariant %d:\n", r.n)
		for i, l := range r.details {
			if i == 40 {
				fmt.Fprintf(out, "  … and %d more\n", len(r.details)-i)
				break
			}
			fmt.Fprintf(out, "  ✗ %s\n", l)
		}
		for i, l := range r.info {
			if i == 25 {
				fmt.Fprintf(out, "  … and %d more\n", len(r.info)-i)
				break
			}
			fmt.Fprintf(out, "  · %s\n", l)
		}
	}
	fmt.Fprintln(out)
	if failedN == 0 {
		fmt.Fprintf(out, "chaos: %d passed, 0 failed\n", len(res))
	} else {
		fmt.Fprintf(out, "chaos: %d passed, %d failed (logs of every process in %s)\n", len(res)-failedN, failedN, c.logDir)
	}
}

// printJobsByKind prints the jobs by kind and status.
func printJobsByKind(out io.Writer, jobCounts map[string]map[string]int) {
	statuses := []string{"succeeded", "failed", "cancelled", "queued", "scheduled", "running", "retrying"}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "jobs by kind\t%s\t\n", strings.Join(statuses, "\t"))
	kinds := make([]string, 0, len(jobCounts))
	for k := range jobCounts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t", k)
		for _, s := range statuses {
			fmt.Fprintf(tw, "%d\t", jobCounts[k][s])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// loadJobCounts reads the jobs by kind and status.
func loadJobCounts(ctx context.Context, db *pgxpool.Pool) (map[string]map[string]int, error) {
	jobCounts := map[string]map[string]int{}
	rows, err := db.Query(ctx, `SELECT kind, status, count(*) FROM jobs GROUP BY kind, status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var kind, status string
		var n int
		if err := rows.Scan(&kind, &status, &n); err != nil {
			return nil, err
		}
		if jobCounts[kind] == nil {
			jobCounts[kind] = map[string]int{}
		}
		jobCounts[kind][status] = n
	}
	return jobCounts, rows.Err()
}

func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// oneLine turns the reconcile command's table into one line.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			parts = append(parts, strings.Join(f, " "))
		}
	}
	return strings.Join(parts, "; ")
}

// --- bare metal (Tenantos) ----------------------------------------------------

// bmMarkPrefix starts the tag that marks a server as a service's
// (jobs.ServiceMark).
const bmMarkPrefix = "provisiond-service:"

// bmMarks returns the services a server is marked for.
func bmMarks(srv bmServer) []string {
	var out []string
	for _, t := range srv.Tags {
		if id, ok := strings.CutPrefix(t, bmMarkPrefix); ok {
			out = append(out, id)
		}
	}
	return out
}

// bmService is a bare-metal service as the database has it.
type bmService struct {
	id, name, status, power, reason string
	server                          int // provider_ref.serverId; 0 for none
	// due: a cancellation's termination was due by the check (terminate_at
	// passed).
	due         bool
	termination string // its termination job's status and error
	drift       []map[string]any
	verified    *time.Time
}

func (s *bmService) live() bool { return s.status != "terminated" }

func loadBareMetal(ctx context.Context, db *pgxpool.Pool) (map[string]*bmService, []string, error) {
	rows, err := db.Query(ctx, `SELECT id::text, name, status, power_state, repair_reason,
			coalesce((provider_ref->>'serverId')::int, 0), coalesce(terminate_at < now(), false),
			coalesce((SELECT j.status || ' ' || j.error FROM jobs j WHERE j.id = services.termination_job_id), 'none'), drift, verified_at
		FROM services WHERE provider = 'tenantos' ORDER BY created_at`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := map[string]*bmService{}
	var order []string
	for rows.Next() {
		s := &bmService{}
		var drift []byte
		if err := rows.Scan(&s.id, &s.name, &s.status, &s.power, &s.reason, &s.server, &s.due, &s.termination, &drift, &s.verified); err != nil {
			return nil, nil, err
		}
		json.Unmarshal(drift, &s.drift)
		out[s.id] = s
		order = append(order, s.id)
	}
	return out, order, rows.Err()
}

// 6. Every bare-metal job ends.
func checkBareMetalJobs(ctx context.Context, db *pgxpool.Pool) result {
	r := result{n: 6, name: "bare metal: every job on a bare-metal service ends"}
	rows, err := db.Query(ctx, `SELECT j.kind, j.status, count(*) FROM jobs j JOIN services s ON s.id = j.service_id
		WHERE s.provider = 'tenantos' GROUP BY j.kind, j.status ORDER BY j.kind, j.status`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	byKind, byStatus := map[string]int{}, map[string]int{}
	total := 0
	for rows.Next() {
		var kind, status string
		var n int
		rows.Scan(&kind, &status, &n)
		byKind[kind] += n
		byStatus[status] += n
		total += n
	}
	rows.Close()
	rows, err = db.Query(ctx, `SELECT j.id::text, j.kind, j.status, j.step, j.attempts, j.error, s.name
		FROM jobs j JOIN services s ON s.id = j.service_id
		WHERE s.provider = 'tenantos' AND j.status IN `+unfinished+` ORDER BY j.created_at`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var id, kind, status, step, errText, name string
		var attempts int
		rows.Scan(&id, &kind, &status, &step, &attempts, &errText, &name)
		r.details = append(r.details, fmt.Sprintf("job %s %s of %s: %s at step %q after %d attempts, error %q", id, kind, name, status, step, attempts, errText))
	}
	rows.Close()
	rows, err = db.Query(ctx, `SELECT j.kind, j.error, count(*) FROM jobs j JOIN services s ON s.id = j.service_id
		WHERE s.provider = 'tenantos' AND j.status = 'failed' GROUP BY 1, 2 ORDER BY 3 DESC, 1`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	for rows.Next() {
		var kind, errText string
		var n int
		rows.Scan(&kind, &errText, &n)
		r.info = append(r.info, fmt.Sprintf("failed: %d × %s: %s", n, kind, errText))
	}
	rows.Close()
	kinds := make([]string, 0, len(byKind))
	for k, n := range byKind {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	r.ok = total > 0 && len(r.details) == 0
	r.summary = fmt.Sprintf("%d jobs (%s): succeeded %d, failed %d, cancelled %d; not ended %d",
		total, strings.Join(kinds, ", "), byStatus["succeeded"], byStatus["failed"], byStatus["cancelled"], len(r.details))
	if total == 0 {
		r.summary += "; no bare-metal job ran at all"
	}
	return r
}

// 7. One server per service and one service per server: no server carries
// two services' marks, no two live services hold one server, every active
// or suspended service's server carries its mark, a terminated one's
// server is back in the pool without its mark (or taken by a live service
// since), and no server carries the mark of a service that does not hold
// it; a cancelled service whose termination was due is terminated.
func checkBareMetalServers(ctx context.Context, c config, db *pgxpool.Pool, bm *sim) result {
	r := result{n: 7, name: "bare metal: one server per service, one service per server; marks where they belong; cancelled ones terminated"}
	services, order, err := loadBareMetal(ctx, db)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	servers, err := bm.bmServers(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	byID := map[int]bmServer{}
	for _, srv := range servers {
		byID[srv.ID] = srv
	}
	inPool := func(srv bmServer) bool {
		return len(bmMarks(srv)) == 0 && containsAll(srv.Tags, c.poolTags)
	}
	var twoMarks, shared, unmarked, notBack, orphans, notTerminated []string
	free, marked := 0, 0
	for _, srv := range servers {
		marks := bmMarks(srv)
		if inPool(srv) {
			free++
		}
		if len(marks) > 0 {
			marked++
		}
		if len(marks) > 1 {
			twoMarks = append(twoMarks, fmt.Sprintf("server %d carries the marks of %d services: %s", srv.ID, len(marks), strings.Join(marks, ", ")))
		}
		for _, id := range marks {
			s := services[id]
			switch {
			case s == nil:
				orphans = append(orphans, fmt.Sprintf("server %d carries the mark of service %s, which does not exist", srv.ID, id))
			case !s.live():
				orphans = append(orphans, fmt.Sprintf("server %d carries the mark of %s (%s), which is terminated", srv.ID, s.name, id))
			case s.server != srv.ID:
				orphans = append(orphans, fmt.Sprintf("server %d carries the mark of %s (%s, %s), which holds server %d", srv.ID, s.name, id, s.status, s.server))
			}
		}
	}
	holders := map[int][]string{}
	held := 0
	for _, id := range order {
		s := services[id]
		if s.server == 0 {
			continue
		}
		if s.live() {
			holders[s.server] = append(holders[s.server], fmt.Sprintf("%s (%s, %s)", s.name, s.id, s.status))
			held++
		}
	}
	for srvID, hs := range holders {
		if len(hs) > 1 {
			shared = append(shared, fmt.Sprintf("server %d is held by %d live services: %s", srvID, len(hs), strings.Join(hs, "; ")))
		}
	}
	terminated := 0
	for _, id := range order {
		s := services[id]
		if s.due && s.live() {
			notTerminated = append(notTerminated, fmt.Sprintf("%s (%s, %s, server %d): cancelled, its termination due, not terminated; termination job: %s",
				s.name, s.id, s.status, s.server, s.termination))
		}
		if s.server == 0 {
			continue
		}
		srv, exists := byID[s.server]
		switch {
		case s.status == "active" || s.status == "suspended":
			if !exists {
				unmarked = append(unmarked, fmt.Sprintf("%s (%s, %s): its server %d does not exist", s.name, s.id, s.status, s.server))
			} else if !slices.Contains(bmMarks(srv), s.id) {
				unmarked = append(unmarked, fmt.Sprintf("%s (%s, %s): its server %d carries no mark of it (tags %q)", s.name, s.id, s.status, s.server, srv.Tags))
			}
		case s.status == "terminated":
			terminated++
			switch {
			case !exists:
				notBack = append(notBack, fmt.Sprintf("%s (%s, terminated): its server %d does not exist", s.name, s.id, s.server))
			case slices.Contains(bmMarks(srv), s.id):
				notBack = append(notBack, fmt.Sprintf("%s (%s, terminated): its server %d still carries its mark (tags %q)", s.name, s.id, s.server, srv.Tags))
			case inPool(srv):
			case len(holders[s.server]) == 1 && len(bmMarks(srv)) == 1:
				r.info = append(r.info, fmt.Sprintf("%s (%s, terminated): its server %d went back to the pool and was taken since by %s",
					s.name, s.id, s.server, holders[s.server][0]))
			default:
				notBack = append(notBack, fmt.Sprintf("%s (%s, terminated): its server %d is not back in the pool (tags %q)", s.name, s.id, s.server, srv.Tags))
			}
		default:
			r.info = append(r.info, fmt.Sprintf("%s (%s, %s) holds server %d: %s", s.name, s.id, s.status, s.server, cmpStr(s.reason, "-")))
		}
	}
	r.ok = len(twoMarks)+len(shared)+len(unmarked)+len(notBack)+len(orphans)+len(notTerminated) == 0
	r.summary = fmt.Sprintf("%d servers (%d free in the pool, %d marked), %d held by live services, %d terminated services: "+
		"servers with two marks %d, servers held twice %d, active/suspended without their mark %d, terminated not back in the pool %d, "+
		"marks of a service not holding the server %d, cancelled but not terminated when due %d",
		len(servers), free, marked, held, terminated, len(twoMarks), len(shared), len(unmarked), len(notBack), len(orphans), len(notTerminated))
	for _, l := range [][]string{twoMarks, shared, unmarked, notBack, orphans, notTerminated} {
		r.details = append(r.details, l...)
	}
	return r
}

func containsAll(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// 8. No install started twice. Every install Tenantos started (a
// startReinstallation call carried out, its answer dropped or not: OS
// installs, rescue boots and disk wipes alike) must be the one install of
// one job that could ask for it (a provision, a reinstall, a rescue boot
// or, with a wipe profile, a termination) on a service that held the
// server (or holds none now: a provision stopped gives its server back),
// running when it started. Installs are matched to jobs in time order,
// each to the open job that ends first.
func checkBareMetalInstalls(ctx context.Context, c config, db *pgxpool.Pool, bm *sim, st *runStats) result {
	r := result{n: 8, name: "bare metal: no install started twice (installs started ≤ the jobs that asked, each its own)"}
	calls, err := bm.calls(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	type install struct {
		at     time.Time
		server string
	}
	var installs []install
	refused := 0
	for _, cl := range calls {
		if cl.Op != "provisioning.startReinstallation" {
			continue
		}
		if cl.Status == 200 {
			installs = append(installs, install{cl.Time, cl.Target})
		} else {
			refused++
		}
	}
	sort.Slice(installs, func(i, j int) bool { return installs[i].at.Before(installs[j].at) })
	type askJob struct {
		id, kind, status, server, service string
		from, to                          time.Time
		asked                             bool
		used                              bool
	}
	rows, err := db.Query(ctx, `SELECT j.id::text, j.kind, j.status, coalesce(s.provider_ref->>'serverId', ''), s.name,
			j.started_at, coalesce(j.finished_at, now()), coalesce(j.checkpoint->'data' ? 'install/before', false)
		FROM jobs j JOIN services s ON s.id = j.service_id
		WHERE s.provider = 'tenantos' AND j.started_at IS NOT NULL
		  AND (j.kind IN ('baremetal.provision', 'baremetal.reinstall', 'service.terminate')
		       OR (j.kind = 'baremetal.rescue' AND coalesce((j.args->>'enable')::boolean, false)))`)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	var jobs []*askJob
	askedBy := map[string]int{}
	for rows.Next() {
		j := &askJob{}
		rows.Scan(&j.id, &j.kind, &j.status, &j.server, &j.service, &j.from, &j.to, &j.asked)
		if j.kind == "service.terminate" {
			if c.wipeProfile == 0 || j.server == "" {
				continue // it wipes nothing
			}
			j.asked = true // at most one wipe; the call is not remembered
		}
		jobs = append(jobs, j)
		if j.asked {
			askedBy[strings.TrimPrefix(j.kind, "baremetal.")]++
		}
	}
	rows.Close()
	const slack = 2 * time.Second
	var unmatched []string
	for _, in := range installs {
		var best *askJob
		for _, j := range jobs {
			if j.used || (j.server != "" && j.server != in.server) ||
				in.at.Before(j.from.Add(-slack)) || in.at.After(j.to.Add(slack)) {
				continue
			}
			if best == nil || j.to.Before(best.to) {
				best = j
			}
		}
		if best == nil {
			var near []string
			for _, j := range jobs {
				if j.server == in.server || j.server == "" {
					if in.at.After(j.from.Add(-slack)) && in.at.Before(j.to.Add(slack)) {
						near = append(near, fmt.Sprintf("%s %s of %s", j.kind, j.id, j.service))
					}
				}
			}
			unmatched = append(unmatched, fmt.Sprintf("install on server %s at %s: no job left that could have asked for it (running then, its install already counted: %s)",
				in.server, in.at.Format("15:04:05.000"), cmpStr(strings.Join(near, "; "), "none")))
			continue
		}
		best.used = true
	}
	asked := 0
	for _, n := range askedBy {
		asked += n
	}
	var by []string
	for k, n := range askedBy {
		by = append(by, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(by)
	st.faults.mu.Lock()
	drops := st.faults.installDrops
	st.faults.mu.Unlock()
	r.ok = len(unmatched) == 0 && len(installs) <= asked
	r.summary = fmt.Sprintf("%d installs started at Tenantos (%d startReinstallation calls refused or cut short, %d answers dropped); "+
		"%d jobs asked for one (%s); installs without a job of their own %d",
		len(installs), refused, drops, asked, strings.Join(by, ", "), len(unmatched))
	r.details = unmatched
	if len(installs) > asked {
		r.details = append(r.details, fmt.Sprintf("%d installs started, more than the %d jobs that asked for one", len(installs), asked))
	}
	return r
}

// 9. After the reconcile rounds, no bare-metal drift: every active or
// suspended bare-metal service was verified by them and found none, and
// its server, read apart from the reconciler, is suspended as the service
// is and powered as recorded (unless it runs the rescue system).
func checkBareMetalDrift(ctx context.Context, db *pgxpool.Pool, bm *sim, reconcileStart time.Time) result {
	r := result{n: 9, name: "bare metal: no drift after two reconcile rounds"}
	services, order, err := loadBareMetal(ctx, db)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	servers, err := bm.bmServers(ctx)
	if err != nil {
		return failed(r.n, r.name, err)
	}
	byID := map[int]bmServer{}
	for _, srv := range servers {
		byID[srv.ID] = srv
	}
	checked, drifted, unverified, suspension, power, rescue := 0, 0, 0, 0, 0, 0
	statuses := map[string]int{}
	for _, id := range order {
		s := services[id]
		statuses[s.status]++
		if s.status != "active" && s.status != "suspended" {
			if s.status == "needs_repair" || s.status == "pending" {
				r.info = append(r.info, fmt.Sprintf("%s (%s): %s %s", s.name, s.id, s.status, s.reason))
			}
			continue
		}
		checked++
		if len(s.drift) > 0 {
			drifted++
			b, _ := json.Marshal(s.drift)
			r.details = append(r.details, fmt.Sprintf("%s (%s, %s): drift %s", s.name, s.id, s.status, b))
		} else if s.verified == nil || s.verified.Before(reconcileStart) {
			unverified++
			r.details = append(r.details, fmt.Sprintf("%s (%s, %s): not verified by the reconcile rounds", s.name, s.id, s.status))
		}
		srv, ok := byID[s.server]
		if !ok {
			continue // invariant 7 reports it
		}
		if (s.status == "suspended") != (len(srv.SuspendedUserIDs) > 0) {
			suspension++
			r.details = append(r.details, fmt.Sprintf("%s (%s): the service is %s, its server %d is suspended for %v", s.name, s.id, s.status, srv.ID, srv.SuspendedUserIDs))
		}
		if srv.Rescue {
			rescue++
			continue
		}
		if want := map[string]string{"online": "running", "offline": "stopped"}[srv.Power]; s.power != "unknown" && want != s.power {
			power++
			r.details = append(r.details, fmt.Sprintf("%s (%s): recorded power %s, its server %d is %s", s.name, s.id, s.power, srv.ID, srv.Power))
		}
	}
	var st []string
	for k, n := range statuses {
		st = append(st, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(st)
	r.ok = len(r.details) == 0
	r.summary = fmt.Sprintf("%d bare-metal services (%s); of %d active or suspended: drift %d, not verified %d, suspension differs %d, power differs %d; in rescue %d",
		len(order), strings.Join(st, ", "), checked, drifted, unverified, suspension, power, rescue)
	return r
}
