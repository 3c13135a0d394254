package sim

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// globalTarget is the key of the global policy.
const globalTarget = "(global)"

// retention is a retention policy; nil fields are inherited.
type retention struct {
	latest, hourly, daily, weekly, monthly, annual *int
}

// defaultRetention is the global policy `repository create` writes.
func defaultRetention() retention {
	n := func(v int) *int { return &v }
	return retention{latest: n(10), hourly: n(48), daily: n(7), weekly: n(4), monthly: n(24), annual: n(3)}
}

type retentionRow struct {
	flag, desc, label string
	value             *int
}

// rows are the policy's settings in the order kopia applies and shows
// them.
func (p *retention) rows() []retentionRow {
	return []retentionRow{
		{"keep-annual", "number of annual backups to keep", "Annual snapshots", p.annual},
		{"keep-monthly", "number of monthly backups to keep", "Monthly snapshots", p.monthly},
		{"keep-weekly", "number of weekly backups to keep", "Weekly snapshots", p.weekly},
		{"keep-daily", "number of daily backups to keep", "Daily snapshots", p.daily},
		{"keep-hourly", "number of hourly backups to keep", "Hourly snapshots", p.hourly},
		{"keep-latest", "number of latest backups to keep", "Latest snapshots", p.latest},
	}
}

func (p *retention) field(flag string) **int {
	switch flag {
	case "keep-annual":
		return &p.annual
	case "keep-monthly":
		return &p.monthly
	case "keep-weekly":
		return &p.weekly
	case "keep-daily":
		return &p.daily
	case "keep-hourly":
		return &p.hourly
	}
	return &p.latest
}

// effectivePolicy merges the policies that apply to src, most specific
// first: the path and its parent directories, user@host, @host, global.
func (r *repository) effectivePolicy(src Source) retention {
	var targets []string
	for p := src.Path; p != ""; p = path.Dir(p) {
		targets = append(targets, Source{Host: src.Host, UserName: src.UserName, Path: p}.String())
		if p == "/" || p == "." {
			break
		}
	}
	targets = append(targets, Source{Host: src.Host, UserName: src.UserName}.String(), Source{Host: src.Host}.String(), globalTarget)
	var eff retention
	for _, t := range targets {
		p, ok := r.policies[t]
		if !ok {
			continue
		}
		for _, row := range p.rows() {
			if f := eff.field(row.flag); *f == nil {
				*f = row.value
			}
		}
	}
	return eff
}

// reasons is kopia's ComputeRetentionReasons: why the policy keeps each
// snapshot of one source, by manifest id; none means it expires.
func (p retention) reasons(group []*snapshot) map[string][]string {
	out := map[string][]string{}
	var maxComplete, maxStart time.Time
	for _, sn := range group {
		if sn.StartTime.After(maxStart) {
			maxStart = sn.StartTime
		}
		if sn.Incomplete == "" && sn.StartTime.After(maxComplete) {
			maxComplete = sn.StartTime
		}
	}
	cutoff := func(n *int, ago func(int) time.Time) time.Time {
		if n != nil {
			return ago(*n)
		}
		return maxComplete.Add(365 * 24 * time.Hour)
	}
	type bucket struct {
		kind   string
		max    *int
		cutoff time.Time
		id     func(time.Time) string
	}
	latest := p.latest
	sum := 0
	for _, row := range p.rows() {
		if row.value != nil {
			sum += *row.value
		}
	}
	if sum == 0 {
		all := math.MaxInt
		latest = &all
	}
	buckets := []bucket{
		{"annual", p.annual, cutoff(p.annual, func(n int) time.Time { return maxComplete.AddDate(-n, 0, 0) }), func(t time.Time) string { return t.Format("2006") }},
		{"monthly", p.monthly, cutoff(p.monthly, func(n int) time.Time { return maxComplete.AddDate(0, -n, 0) }), func(t time.Time) string { return t.Format("2006-01") }},
		{"weekly", p.weekly, cutoff(p.weekly, func(n int) time.Time { return maxComplete.AddDate(0, 0, -7*n) }), func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04v-%02v", y, w)
		}},
		{"daily", p.daily, cutoff(p.daily, func(n int) time.Time { return maxComplete.AddDate(0, 0, -n) }), func(t time.Time) string { return t.Format("2006-01-02") }},
		{"hourly", p.hourly, cutoff(p.hourly, func(n int) time.Time { return maxComplete.Add(-time.Duration(n) * time.Hour) }), func(t time.Time) string { return t.Format("2006-01-02 15") }},
	}
	sorted := slices.Clone(group)
	sortByTime(sorted, true)
	ids, counters := map[string]bool{}, map[string]int{}
	keep := func(kind string, max *int, id string) []string {
		if max == nil || ids[id] || counters[kind] >= *max {
			return nil
		}
		ids[id] = true
		counters[kind]++
		return []string{fmt.Sprintf("%v-%v", kind, counters[kind])}
	}
	for i, sn := range sorted {
		if sn.Incomplete != "" {
			out[sn.ID] = []string{}
			continue
		}
		t := sn.StartTime.UTC()
		rs := keep("latest", latest, strconv.Itoa(i))
		for _, b := range buckets {
			if !t.Before(b.cutoff) {
				rs = append(rs, keep(b.kind, b.max, b.id(t))...)
			}
		}
		sortRetentionTags(rs)
		out[sn.ID] = rs
	}
	for i, sn := range sorted {
		if sn.Incomplete == "" {
			break
		}
		if maxStart.Sub(sn.StartTime) >= 4*time.Hour && i >= 3 {
			break
		}
		out[sn.ID] = append(out[sn.ID], "incomplete")
	}
	return out
}

// sortRetentionTags orders tags latest, hourly, daily, weekly, monthly,
// annual, as kopia prints them.
func sortRetentionTags(tags []string) {
	order := map[string]int{"latest": 1, "hourly": 2, "daily": 3, "weekly": 4, "monthly": 5, "annual": 6}
	sort.Slice(tags, func(i, j int) bool {
		p1, s1, _ := strings.Cut(tags[i], "-")
		p2, s2, _ := strings.Cut(tags[j], "-")
		if order[p1] != order[p2] {
			return order[p1] < order[p2]
		}
		return s1 < s2
	})
}

func (e *execution) policySet() int {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	c, r, err := e.open()
	if err != nil {
		return e.fail(err)
	}
	args := e.inv.args["target"]
	if e.inv.boolean("global") == (len(args) > 0) {
		return e.fail(errors.New("must pass either '--global' or a list of path targets"))
	}
	targets := []Source{{}}
	if len(args) > 0 {
		targets = targets[:0]
		for _, a := range args {
			targets = append(targets, e.parseSource(a, c))
		}
	}
	for _, t := range targets {
		p := r.policies[t.String()]
		e.info("Setting policy for %v", t)
		changes := 0
		for _, row := range p.rows() {
			v := e.inv.str(row.flag)
			switch v {
			case "":
				continue
			case "inherit", "default":
				e.info(" - resetting %q to a default value inherited from parent.", row.desc)
				*p.field(row.flag) = nil
			default:
				n, err := strconv.ParseInt(v, 10, 32)
				if err != nil {
					return e.fail(fmt.Errorf("retention policy: can't parse the %v %q: %w", row.desc, v, err))
				}
				e.info(" - setting %q to %v.", row.desc, n)
				i := int(n)
				*p.field(row.flag) = &i
			}
			changes++
		}
		if changes == 0 {
			return e.fail(errors.New("no changes specified"))
		}
		r.policies[t.String()] = p
	}
	return 0
}
