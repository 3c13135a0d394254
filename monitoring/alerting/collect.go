package alerting

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// Collector reads services' usage from their providers. A provider it has
// no client for is not collected.
type Collector struct {
	Proxmox     *proxmox.Client
	Pterodactyl *pterodactyl.Client
	// Concurrency bounds the calls made at once for providers asked one
	// service at a time; 8 by default.
	Concurrency int
}

// usage is one service's reading, before rates are worked out.
type usage struct {
	online            bool
	cpu, memory, disk float64
	netIn, netOut     int64
}

// Collect reads the batch's usage and stores one sample per service read,
// timed at; it returns how many. Services the provider could not report
// on get no sample (a gap), not a made-up one.
func (c *Collector) Collect(ctx context.Context, q *queries.Queries, b Batch, at time.Time) (int, error) {
	svcs, err := q.GetMonitoredServices(ctx, b.Services)
	if err != nil {
		return 0, fmt.Errorf("load services: %w", err)
	}
	var read map[uuid.UUID]usage
	switch b.Provider {
	case proxmox.Provider:
		read, err = c.proxmox(ctx, b.Node, svcs)
	case pterodactyl.Provider:
		read, err = c.pterodactyl(ctx, svcs)
	default:
		return 0, fmt.Errorf("no collector for provider %q", b.Provider)
	}
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
			in, out = mbits(u.netIn-l.NetInBytes, secs), mbits(u.netOut-l.NetOutBytes, secs)
		}
		p.ServiceIds = append(p.ServiceIds, s.ID)
		p.Ats = append(p.Ats, at)
		p.Online = append(p.Online, u.online)
		p.Cpu = append(p.Cpu, float32(u.cpu))
		p.Memory = append(p.Memory, float32(u.memory))
		p.Disk = append(p.Disk, float32(u.disk))
		p.NetworkIn = append(p.NetworkIn, float32(in))
		p.NetworkOut = append(p.NetworkOut, float32(out))
		p.NetInBytes = append(p.NetInBytes, u.netIn)
		p.NetOutBytes = append(p.NetOutBytes, u.netOut)
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

func percent(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return min(100, part/whole*100)
}

// proxmox reads a node's VMs in one call.
func (c *Collector) proxmox(ctx context.Context, node string, svcs []queries.Service) (map[uuid.UUID]usage, error) {
	if c.Proxmox == nil {
		return nil, errors.New("no Proxmox client")
	}
	vms, err := c.Proxmox.NodeUsage(ctx, node)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]usage, len(svcs))
	for _, s := range svcs {
		ref, err := jobs.ProxmoxRef(&s)
		if err != nil || ref.Node != node {
			continue // moved since the round: the next round finds it
		}
		vm, ok := vms[ref.VMID]
		if !ok {
			out[s.ID] = usage{} // gone from its node: not running
			continue
		}
		running := vm.Status == "running" && vm.QMPStatus != "paused"
		out[s.ID] = usage{online: running, cpu: min(100, vm.CPU*100), memory: percent(float64(vm.Mem), float64(vm.MaxMem)),
			disk: percent(float64(vm.Disk), float64(vm.MaxDisk)), netIn: int64(vm.NetIn), netOut: int64(vm.NetOut)}
	}
	return out, nil
}

// pterodactyl asks Wings for each server's resources, a few at a time.
func (c *Collector) pterodactyl(ctx context.Context, svcs []queries.Service) (map[uuid.UUID]usage, error) {
	if c.Pterodactyl == nil {
		return nil, errors.New("no Pterodactyl client")
	}
	var (
		mu   sync.Mutex
		out  = make(map[uuid.UUID]usage, len(svcs))
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, cmp.Or(c.Concurrency, 8))
	)
	for _, s := range svcs {
		ref, err := jobs.PterodactylRef(&s)
		if err != nil {
			continue
		}
		plan, _ := jobs.GameServicePlan(&s)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := c.Pterodactyl.Resources(ctx, ref.Identifier)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, pterodactyl.ErrNotFound):
				out[s.ID] = usage{} // gone from the panel: not running, as a VM gone from its node
				return
			case err != nil:
				// Installing or restoring (409) or unreachable: no sample.
				errs = append(errs, fmt.Errorf("service %s: %w", s.ID, err))
				return
			}
			// An unlimited plan (0) has no share to speak of; its CPU is
			// measured against one core.
			out[s.ID] = usage{online: r.State == "running", cpu: percent(r.CPUAbsolute, float64(cmp.Or(plan.CPU, 100))),
				memory: percent(r.MemoryBytes, float64(plan.MemoryMB)*(1<<20)),
				disk:   percent(float64(r.DiskBytes), float64(plan.DiskMB)*(1<<20)),
				netIn:  r.NetworkRxBytes, netOut: r.NetworkTxBytes}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
