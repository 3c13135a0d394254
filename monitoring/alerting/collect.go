package alerting

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// Collector reads services' usage from their providers (a
// jobs.UsageReader). A provider without one is not collected.
type Collector struct {
	Providers *jobs.Registry
}

// Collect reads the batch's usage and stores one sample per service read,
// timed at; it returns how many. Services the provider could not report
// on get no sample (a gap), not a made-up one.
func (c *Collector) Collect(ctx context.Context, q *queries.Queries, b Batch, at time.Time) (int, error) {
	svcs, err := q.GetMonitoredServices(ctx, b.Services)
	if err != nil {
		return 0, fmt.Errorf("load services: %w", err)
	}
	r, ok := jobs.Capability[jobs.UsageReader](c.Providers, b.Provider)
	if !ok {
		return 0, fmt.Errorf("no usage reader for provider %q", b.Provider)
	}
	read, err := r.Usage(ctx, b.Node, svcs)
	if len(read) == 0 {
		return 0, err
	}
	prev, perr := q.LatestSamples(ctx, queries.LatestSamplesParams{Ids: b.Services, Since: at.Add(-time.Hour)})
	if perr != nil {
		return 0, errors.Join(err, fmt.Errorf("load previous samples: %w", perr))
	}
	last := make(map[uuid.UUID]queries.ServiceSample, len(prev))
	for _, p := range prev {
		last[p.ServiceID] = p
	}
	var p queries.InsertSamplesParams
	for _, s := range svcs {
		u, ok := read[s.ID]
		if !ok {
			continue
		}
		in, out := 0.0, 0.0
		if l, ok := last[s.ID]; ok && at.After(l.At) {
			secs := at.Sub(l.At).Seconds()
			in, out = mbits(u.NetIn-l.NetInBytes, secs), mbits(u.NetOut-l.NetOutBytes, secs)
		}
		p.ServiceIds = append(p.ServiceIds, s.ID)
		p.Ats = append(p.Ats, at)
		p.Online = append(p.Online, u.Online)
		p.Cpu = append(p.Cpu, float32(u.CPU))
		p.Memory = append(p.Memory, float32(u.Memory))
		p.Disk = append(p.Disk, float32(u.Disk))
		p.NetworkIn = append(p.NetworkIn, float32(in))
		p.NetworkOut = append(p.NetworkOut, float32(out))
		p.NetInBytes = append(p.NetInBytes, u.NetIn)
		p.NetOutBytes = append(p.NetOutBytes, u.NetOut)
	}
	n, ierr := q.InsertSamples(ctx, p)
	if ierr != nil {
		return 0, errors.Join(err, fmt.Errorf("store samples: %w", ierr))
	}
	return int(n), err
}

// mbits is a byte counter's growth over secs in Mbit/s; a counter that went
// back (the VM or container restarted) counts as no traffic.
func mbits(delta int64, secs float64) float64 {
	if delta <= 0 || secs <= 0 {
		return 0
	}
	return float64(delta) * 8 / 1e6 / secs
}
