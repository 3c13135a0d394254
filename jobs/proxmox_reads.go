package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/queries"
)

// This file holds the Proxmox provider's live reads, which the API answers
// from (templates, status, traffic, backups, the console) and the
// registration of an existing VM. Each reads the service's VM only after
// checking it is the service's own (see ServiceVM).

// Template is a VM template a VPS may be installed from.
type Template struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	Node string `json:"node"`
}

// Templates lists the cluster's templates.
func (w *VPSWorkers) Templates(ctx context.Context) ([]Template, error) {
	ts, err := w.Proxmox.Templates(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Template, 0, len(ts))
	for _, t := range ts {
		out = append(out, Template{ID: t.VMID, Name: t.Name, Node: t.Node})
	}
	return out, nil
}

// VMStatus is a VM's power state and usage, live.
type VMStatus struct {
	PowerState string `json:"powerState"`
	// Uptime is in seconds.
	Uptime uint64 `json:"uptime"`
	CPU    struct {
		Cores        int     `json:"cores"`
		UsagePercent float64 `json:"usagePercent"`
	} `json:"cpu"`
	Memory  UsedTotal `json:"memory"`
	Disk    UsedTotal `json:"disk"`
	Network struct {
		InBytes  uint64 `json:"inBytes"`
		OutBytes uint64 `json:"outBytes"`
	} `json:"network"`
	Locked bool `json:"locked"`
}

// UsedTotal is a used amount of a total, in bytes.
type UsedTotal struct {
	UsedBytes  uint64 `json:"usedBytes"`
	TotalBytes uint64 `json:"totalBytes"`
}

// LiveStatus implements LiveReader: the VM's power state and usage (a
// VMStatus).
func (w *VPSWorkers) LiveStatus(ctx context.Context, svc *queries.Service, log *slog.Logger) (any, error) {
	return w.status(ctx, svc, log)
}

func (w *VPSWorkers) status(ctx context.Context, svc *queries.Service, log *slog.Logger) (VMStatus, error) {
	ref, err := ServiceVM(ctx, w.Proxmox, w.Queries, svc, log)
	if err != nil {
		return VMStatus{}, err
	}
	u, err := w.Proxmox.Usage(ctx, ref)
	if err != nil {
		return VMStatus{}, err
	}
	st := VMStatus{PowerState: u.PowerState(), Uptime: u.Uptime, Memory: UsedTotal{u.Mem, u.MaxMem},
		Disk: UsedTotal{u.Disk, u.MaxDisk}, Locked: u.Lock != ""}
	st.CPU.Cores, st.CPU.UsagePercent = u.Cores, round2(u.CPU*100)
	st.Network.InBytes, st.Network.OutBytes = u.NetIn, u.NetOut
	return st, nil
}

// Timeframes are the spans traffic is read over.
var Timeframes = []string{"hour", "day", "week", "month"}

// Traffic is a VM's network traffic over a timeframe.
type Traffic struct {
	Timeframe string         `json:"timeframe"`
	Points    []TrafficPoint `json:"points"`
	Totals    struct {
		InBytes  int64 `json:"inBytes"`
		OutBytes int64 `json:"outBytes"`
	} `json:"totals"`
}

// TrafficPoint is the average rate over one step of a timeframe.
type TrafficPoint struct {
	Time              time.Time `json:"time"`
	InBytesPerSecond  float64   `json:"inBytesPerSecond"`
	OutBytesPerSecond float64   `json:"outBytesPerSecond"`
}

// Traffic implements LiveReader: the VM's traffic over the timeframe (one
// of Timeframes), from Proxmox's RRD.
func (w *VPSWorkers) Traffic(ctx context.Context, svc *queries.Service, timeframe string, log *slog.Logger) (Traffic, error) {
	ref, err := ServiceVM(ctx, w.Proxmox, w.Queries, svc, log)
	if err != nil {
		return Traffic{}, err
	}
	points, err := w.Proxmox.RRD(ctx, ref, timeframe)
	if err != nil {
		return Traffic{}, err
	}
	t := Traffic{Timeframe: timeframe, Points: make([]TrafficPoint, 0, len(points))}
	var in, out float64
	for i, p := range points {
		t.Points = append(t.Points, TrafficPoint{Time: time.Unix(int64(p.Time), 0).UTC(),
			InBytesPerSecond: round2(p.NetIn), OutBytesPerSecond: round2(p.NetOut)})
		if i > 0 {
			step := float64(p.Time - points[i-1].Time)
			in, out = in+p.NetIn*step, out+p.NetOut*step
		}
	}
	t.Totals.InBytes, t.Totals.OutBytes = int64(in), int64(out)
	return t, nil
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// Backups lists the service's VM's backups, oldest first.
func (w *VPSWorkers) Backups(ctx context.Context, svc *queries.Service, log *slog.Logger) ([]Backup, error) {
	ref, err := ServiceVM(ctx, w.Proxmox, w.Queries, svc, log)
	if err != nil {
		return nil, err
	}
	return ListBackups(ctx, w.Proxmox, ref, w.backupStorage())
}

// CountBackups counts the backups of the service's VM, for a plan's limit
// checked before a backup job exists.
func (w *VPSWorkers) CountBackups(ctx context.Context, svc *queries.Service) (int, error) {
	ref, err := ProxmoxRef(svc)
	if err != nil {
		return 0, err
	}
	b, err := ListBackups(ctx, w.Proxmox, ref, w.backupStorage())
	return len(b), err
}

// HasBackup reports whether id names one of the service's VM's backups.
func (w *VPSWorkers) HasBackup(ctx context.Context, svc *queries.Service, id string) (bool, error) {
	ref, err := ProxmoxRef(svc)
	if err != nil || !ValidBackupID(id, ref.VMID) {
		return false, err
	}
	b, err := ListBackups(ctx, w.Proxmox, ref, w.backupStorage())
	return slices.ContainsFunc(b, func(b Backup) bool { return b.ID == id }), err
}

// DialConsole opens the service's VM's VNC console: the websocket to PVE's
// vncwebsocket, and the ticket that logs in on it.
func (w *VPSWorkers) DialConsole(ctx context.Context, svc *queries.Service) (*websocket.Conn, string, error) {
	ref, err := ProxmoxRef(svc)
	if err != nil {
		return nil, "", err
	}
	con, err := w.Proxmox.OpenConsole(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	conn, err := w.Proxmox.DialConsole(ctx, con)
	return conn, con.Ticket, err
}

// ErrVMUnavailable is returned by Register for a VM that does not exist,
// is a template, or belongs to another service: one answer for all, so
// that nobody learns which nodes or VMIDs exist or whose they are.
var ErrVMUnavailable = errors.New("the VM cannot be registered")

// Register implements Registrar: the VM the pending service's reference
// names must be on one of the cluster's nodes and free; its VMID is then
// reserved for the service and the VM gets the service's tag.
func (w *VPSWorkers) Register(ctx context.Context, svc queries.Service) error {
	vm, err := ProxmoxRef(&svc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVMUnavailable, err)
	}
	nodes, err := w.Proxmox.Nodes(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(nodes, func(n proxmox.NodeLoad) bool { return n.Node == vm.Node }) {
		return fmt.Errorf("%w: no node %s", ErrVMUnavailable, vm.Node)
	}
	err = ClaimVM(ctx, w.Proxmox, vm, svc.ID, func(ctx context.Context) (bool, error) {
		n, err := w.reserveForRegistration(ctx, vm.VMID, svc)
		return n == 1, err
	})
	if errors.Is(err, ErrVMTaken) || errors.Is(err, proxmox.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrVMUnavailable, err)
	}
	return err
}

// reserveForRegistration reserves the VMID for the service being
// registered, taking it over from a registration of the same team that an
// API stopped halfway.
func (w *VPSWorkers) reserveForRegistration(ctx context.Context, vmid int, svc queries.Service) (int64, error) {
	n, err := w.Queries.ReserveVMID(ctx, queries.ReserveVMIDParams{Vmid: int32(vmid), ServiceID: svc.ID})
	if err != nil || n == 1 {
		return n, err
	}
	if gone, err := w.Queries.DeleteStaleRegistration(ctx, queries.DeleteStaleRegistrationParams{Vmid: int32(vmid), TeamID: svc.TeamID}); err != nil || gone == 0 {
		return 0, err
	}
	return w.Queries.ReserveVMID(ctx, queries.ReserveVMIDParams{Vmid: int32(vmid), ServiceID: svc.ID})
}
