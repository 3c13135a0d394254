package tenantos

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// StatsQuery is the window of a statistics call. Zero values are not sent:
// the panel's default is the last 24 hours.
type StatsQuery struct {
	// Predefined names a window: "1h", "today", "24h", "14days", "30days",
	// "all"; network also takes "week", "currentWeek", "month",
	// "currentMonth", "year".
	Predefined string
	// From and To bound the window instead; sent in UTC.
	From, To time.Time
}

// Stats is a statistics answer: Ports for the network category (one
// series per switch port), Points for the others.
type Stats struct {
	Ports  []StatsPort
	Points []StatsPoint
}

// StatsPort is the traffic of one switch port.
type StatsPort struct {
	Switch, Port string
	Points       []StatsPoint
}

// StatsPoint is one point of a graph, or one day of a text summary. Only
// the fields of its category are set. Rates (bytes, packets, operations)
// are per second in a graph and totals in a day.
type StatsPoint struct {
	// Timestamp is the point's time (graph mode); Date the day's, as
	// "2006-01-02" (text mode).
	Timestamp time.Time `json:"timestamp,omitzero"`
	Date      string    `json:"date,omitempty"`
	// network
	BytesIn    int64 `json:"bytesIn,omitempty"`
	BytesOut   int64 `json:"bytesOut,omitempty"`
	PacketsIn  int64 `json:"packetsIn,omitempty"`
	PacketsOut int64 `json:"packetsOut,omitempty"`
	// cpu (Usage, Peak in percent, Cores) and memory (Usage, Peak in
	// percent; Used and Total in MB)
	Usage float64 `json:"usage,omitempty"`
	Peak  float64 `json:"peak,omitempty"`
	Cores int     `json:"cores,omitempty"`
	Used  int64   `json:"used,omitempty"`
	Total int64   `json:"total,omitempty"`
	// diskio
	ReadBytes  int64 `json:"readBytes,omitempty"`
	WriteBytes int64 `json:"writeBytes,omitempty"`
	ReadOps    int64 `json:"readOps,omitempty"`
	WriteOps   int64 `json:"writeOps,omitempty"`
	// ipmi: the BMC's sensors. PowerState is "on" or "off"; a server that
	// is off still draws the BMC's few watts.
	PowerState string  `json:"powerState,omitempty"`
	PowerWatts float64 `json:"powerWatts,omitempty"`
	InletTempC float64 `json:"inletTempC,omitempty"`
	CPUTempC   float64 `json:"cpuTempC,omitempty"`
	FanRPM     int     `json:"fanRpm,omitempty"`
}

func (j statsPointJSON) point() StatsPoint {
	return StatsPoint{Timestamp: parseTime(j.Timestamp), Date: j.Date,
		BytesIn: int64(j.BytesIn), BytesOut: int64(j.BytesOut), PacketsIn: int64(j.PacketsIn), PacketsOut: int64(j.PacketsOut),
		Usage: float64(j.Usage), Peak: float64(j.Peak), Cores: int(j.Cores), Used: int64(j.Used), Total: int64(j.Total),
		ReadBytes: int64(j.ReadBytes), WriteBytes: int64(j.WriteBytes), ReadOps: int64(j.ReadOps), WriteOps: int64(j.WriteOps),
		PowerState: j.PowerState, PowerWatts: float64(j.PowerWatts), InletTempC: float64(j.InletTemp), CPUTempC: float64(j.CPUTemp),
		FanRPM: int(j.FanRPM)}
}

func points(list []statsPointJSON) []StatsPoint {
	out := make([]StatsPoint, 0, len(list))
	for _, j := range list {
		out = append(out, j.point())
	}
	return out
}

// Stats reads a server's statistics of one category (see StatsCategories)
// in mode "graph" (points over the window) or "text" (a summary per day).
// An unknown category is ErrNotFound; a window the category does not
// offer is refused (422).
func (c *Client) Stats(ctx context.Context, id int, category, mode string, q StatsQuery) (Stats, error) {
	body := statsQueryJSON{Predefined: q.Predefined}
	if !q.From.IsZero() {
		body.From = q.From.UTC().Format(statsTimeLayout)
	}
	if !q.To.IsZero() {
		body.To = q.To.UTC().Format(statsTimeLayout)
	}
	var out statsResult
	if err := c.call(ctx, "stats."+category, http.MethodPost, statsPath(id, category, mode), body, &out); err != nil {
		return Stats{}, err
	}
	return Stats(out), nil
}

// statsResult reads a stats result: a list of ports or of points, told
// apart by shape rather than by category (a port carries its points in
// "stats").
type statsResult Stats

// UnmarshalJSON implements json.Unmarshaler.
func (st *statsResult) UnmarshalJSON(data []byte) error {
	var list []json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return err
	}
	for _, raw := range list {
		var port statsPortJSON
		if err := json.Unmarshal(raw, &port); err == nil && port.Stats != nil {
			st.Ports = append(st.Ports, StatsPort{Switch: port.Switch, Port: port.Port, Points: points(*port.Stats)})
			continue
		}
		var p statsPointJSON
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		st.Points = append(st.Points, p.point())
	}
	return nil
}
