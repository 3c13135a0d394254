package sim

import (
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"time"
)

// statsRanges are the predefined ranges each statistics category accepts.
var statsRanges = map[string][]string{
	"network": {"today", "1h", "24h", "14days", "30days", "all", "currentWeek", "week", "month", "currentMonth", "year"},
	"cpu":     {"today", "1h", "24h", "14days", "30days", "all"},
	"memory":  {"today", "1h", "24h", "14days", "30days", "all"},
	"diskio":  {"today", "1h", "24h", "14days", "30days", "all"},
	"ipmi":    {"today", "1h", "24h", "14days", "30days", "all"},
}

// stats answers POST .../stats/{category}/{mode}: "graph" gives points
// (every 5 minutes up to a day, hourly up to a month, daily beyond), "text"
// a summary per day. Values are a deterministic daily wave with noise, so
// asking twice gives the same series.
func (s *Server) stats(q *request) (any, error) {
	category, mode := q.r.PathValue("category"), q.r.PathValue("mode")
	allowed, ok := statsRanges[category]
	if !ok {
		return nil, &apiError{Status: http.StatusNotFound, Message: "The route " + q.r.URL.Path[1:] + " could not be found."}
	}
	v := newValidator(q.in)
	if mode != "graph" && mode != "text" {
		v.fail("statsMode", "The selected :attribute is invalid.")
	}
	predefined, ok := v.oneOf("predefined", allowed...)
	if !ok {
		predefined = "24h"
	}
	from, hasFrom := v.date("from")
	to, hasTo := v.date("to")
	v.integer("user_id")
	if err := v.err(); err != nil {
		return nil, err
	}
	start, end := statsRange(predefined, q.now)
	if hasFrom {
		start = from
	}
	if hasTo {
		end = to
	}
	series := statsSeries{m: q.m, category: category}
	var points []map[string]any
	if mode == "graph" {
		step := 5 * time.Minute
		switch span := end.Sub(start); {
		case span > 31*24*time.Hour:
			step = 24 * time.Hour
		case span > 25*time.Hour:
			step = time.Hour
		}
		for t := start.Truncate(step); !t.After(end); t = t.Add(step) {
			if !t.Before(start) {
				points = append(points, series.point(t))
			}
		}
	} else {
		for day := start.UTC().Truncate(24 * time.Hour); !day.After(end); day = day.Add(24 * time.Hour) {
			points = append(points, series.day(day, max(start.Unix(), day.Unix()), min(end.Unix(), day.Add(24*time.Hour).Unix())))
		}
	}
	if points == nil {
		points = []map[string]any{}
	}
	if category == "network" {
		return []map[string]any{{"id": q.m.ID, "switch": "sw01.sim", "port": "Ethernet1/" + strconv.Itoa(q.m.ID), "stats": points}}, nil
	}
	return points, nil
}

// statsRange is the window a predefined range names.
func statsRange(predefined string, now time.Time) (time.Time, time.Time) {
	now = now.UTC()
	midnight := now.Truncate(24 * time.Hour)
	switch predefined {
	case "today":
		return midnight, now
	case "1h":
		return now.Add(-time.Hour), now
	case "14days":
		return now.AddDate(0, 0, -14), now
	case "30days", "all", "month":
		return now.AddDate(0, 0, -30), now
	case "week":
		return now.AddDate(0, 0, -7), now
	case "currentWeek":
		return midnight.AddDate(0, 0, -(int(now.Weekday())+6)%7), now
	case "currentMonth":
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), now
	case "year":
		return now.AddDate(-1, 0, 0), now
	}
	return now.Add(-24 * time.Hour), now
}

// statsSeries computes one server's values of one category.
type statsSeries struct {
	m        *machine
	category string
}

// level is the load at t in [0, 1): a daily wave peaking in the evening,
// plus noise that is fixed per server, metric and 5-minute slot.
func (ss statsSeries) level(metric string, t time.Time) float64 {
	h := fnv.New64a()
	h.Write([]byte(strconv.Itoa(ss.m.ID) + "/" + metric + "/" + strconv.FormatInt(t.Unix()/300, 10)))
	noise := float64(h.Sum64()%1000) / 1000
	hour := float64(t.UTC().Hour()) + float64(t.UTC().Minute())/60
	daily := 0.5 + 0.5*math.Sin(2*math.Pi*(hour-12)/24)
	return 0.7*daily + 0.3*noise
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// point is the value at t of a graph.
func (ss statsSeries) point(t time.Time) map[string]any {
	p := map[string]any{"timestamp": t.UTC().Format(time.DateTime)}
	hw := ss.m.Hardware
	switch ss.category {
	case "network": // bytes per second on a 1 Gbit/s port
		in, out := int64(ss.level("in", t)*40e6), int64(ss.level("out", t)*120e6)
		p["bytesIn"], p["bytesOut"], p["packetsIn"], p["packetsOut"] = in, out, in/900, out/1200
	case "cpu":
		p["usage"], p["cores"] = round2(2+70*ss.level("cpu", t)), hw.CPUThreads
	case "memory":
		usage := round2(25 + 50*ss.level("mem", t))
		p["used"], p["total"], p["usage"] = int(float64(hw.MemoryMB)*usage/100), hw.MemoryMB, usage
	case "diskio": // bytes and operations per second
		r, w := int64(ss.level("read", t)*80e6), int64(ss.level("write", t)*40e6)
		p["readBytes"], p["writeBytes"], p["readOps"], p["writeOps"] = r, w, r/16384, w/8192
	case "ipmi": // the BMC's sensors; field names are a guess
		if ss.m.Power == "online" {
			p["powerState"], p["powerWatts"] = "on", round2(70+150*ss.level("watts", t))
			p["inletTemp"], p["cpuTemp"] = round2(21+4*ss.level("inlet", t)), round2(38+35*ss.level("cputemp", t))
			p["fanRpm"] = 2400 + int(3600*ss.level("fan", t))
		} else {
			// Only the BMC draws power; the fans stand still.
			p["powerState"], p["powerWatts"] = "off", round2(6+3*ss.level("watts", t))
			p["inletTemp"], p["cpuTemp"] = round2(19+3*ss.level("inlet", t)), round2(22+4*ss.level("cputemp", t))
			p["fanRpm"] = 0
		}
	}
	return p
}

// peakOf is the field whose daily maximum a text summary shows as "peak".
var peakOf = map[string]string{"cpu": "usage", "memory": "usage", "ipmi": "powerWatts"}

// day summarizes the hours of day between the unix times from and to:
// totals for traffic and I/O, averages and peaks for CPU, memory and the
// power draw, average sensor readings.
func (ss statsSeries) day(day time.Time, from, to int64) map[string]any {
	sums, peak, n := map[string]float64{}, 0.0, 0
	var state any
	for t := day; t.Before(day.Add(24 * time.Hour)); t = t.Add(time.Hour) {
		if t.Unix() < from-3599 || t.Unix() > to {
			continue
		}
		n++
		p := ss.point(t)
		for k, v := range p {
			if f, ok := toFloat(v); ok {
				sums[k] += f
			}
		}
		if u, ok := toFloat(p[peakOf[ss.category]]); ok {
			peak = max(peak, u)
		}
		state = p["powerState"]
	}
	out := map[string]any{"date": day.Format(time.DateOnly)}
	hours := float64(max(n, 1))
	for k, sum := range sums {
		switch ss.category {
		case "network", "diskio":
			out[k] = int64(sum * 3600) // per-second rates over the hours
		default:
			out[k] = round2(sum / hours)
		}
	}
	if _, ok := peakOf[ss.category]; ok {
		out["peak"] = peak
	}
	if ss.category == "ipmi" {
		out["fanRpm"] = int(math.Round(sums["fanRpm"] / hours))
		if state != nil {
			out["powerState"] = state
		}
	}
	return out
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}
