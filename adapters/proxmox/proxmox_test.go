package proxmox_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/h2non/gock"
	"github.com/luthermonson/go-proxmox/tests/mocks"
	"github.com/luthermonson/go-proxmox/tests/mocks/config"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

// backend is somewhere the adapter's calls are answered: the simulator, or
// go-proxmox's recorded answers of a real PVE 8 (tests/mocks).
type backend struct {
	name string
	// client returns a client for one call; recorded answers are used up
	// by a call, so each call gets them afresh.
	client func(t *testing.T) *proxmox.Client
	node   string
	// okTask and failedTask are UPIDs of a task that ended OK and one that
	// failed.
	okTask, failedTask func(t *testing.T) string
}

// newSim serves a simulator configured by cfg (its token and task
// duration set here) with the demo VMs, and returns it with a client of it.
func newSim(t *testing.T, cfg sim.Config) (*sim.Server, *proxmox.Client) {
	t.Helper()
	cfg.TokenID, cfg.TokenSecret, cfg.TaskDuration = "root@pam!t", "s", 10*time.Millisecond
	s := sim.New(cfg)
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	c, err := proxmox.New(proxmox.Config{URL: ts.URL + "/api2/json", TokenID: cfg.TokenID, TokenSecret: cfg.TokenSecret,
		PollInterval: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func simBackend(t *testing.T) backend {
	s, c := newSim(t, sim.Config{})
	task := func(fault simkit.Fault) func(t *testing.T) string {
		return func(t *testing.T) string {
			s.Inject(fault)
			upid, err := c.Power(context.Background(), proxmox.VMRef{Node: "pve1", VMID: 101}, proxmox.OpStart, proxmox.PowerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return upid
		}
	}
	return backend{
		name: "simulator", client: func(*testing.T) *proxmox.Client { return c }, node: "pve1",
		okTask:     task(simkit.Fault{Op: "version"}),
		failedTask: task(simkit.Fault{Op: "start", Times: 1, TaskError: "start failed"}),
	}
}

// recordedBase is where the recordings answer; they are registered without
// the /api2/json prefix, so the client's base URL has none either.
const recordedBase = "http://pve8.recorded"

func recordedBackend() backend {
	return backend{
		name: "recorded PVE 8",
		client: func(t *testing.T) *proxmox.Client {
			mocks.ProxmoxVE8x(config.Config{URI: recordedBase})
			t.Cleanup(mocks.Off)
			c, err := proxmox.New(proxmox.Config{URL: recordedBase, TokenID: "root@pam!t", TokenSecret: "s",
				PollInterval: time.Millisecond, Transport: gock.NewTransport()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		node:       "node1",
		okTask:     func(*testing.T) string { return "UPID:node1:00000002:00000002:00000002:test:completed:root@pam:" },
		failedTask: func(*testing.T) string { return "UPID:node1:00000003:00000003:00000003:test:failed:root@pam:" },
	}
}

// TestAdapterCallsDecodeBothSimulatorAndRecordedPVE runs each adapter call
// the simulator and the recordings both answer against each of them, so that
// the simulator cannot drift from what a real PVE sends without a test
// saying so. The recordings are not run in parallel: gock is global.
func TestAdapterCallsDecodeBothSimulatorAndRecordedPVE(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(t *testing.T, b backend, c *proxmox.Client) error
	}{
		{"nodes", func(t *testing.T, b backend, c *proxmox.Client) error {
			ns, err := c.Nodes(ctx)
			if err == nil && (len(ns) == 0 || ns[0].Node == "" || ns[0].MaxMem == 0) {
				t.Errorf("nodes %+v: want named nodes with memory", ns)
			}
			return err
		}},
		{"nextid", func(t *testing.T, b backend, c *proxmox.Client) error {
			id, err := c.NextID(ctx)
			if err == nil && id < 100 {
				t.Errorf("next id %d", id)
			}
			return err
		}},
		{"cluster resources", func(t *testing.T, b backend, c *proxmox.Client) error {
			_, _, err := c.VMByTag(ctx, "no-such-tag")
			return err
		}},
		{"config", func(t *testing.T, b backend, c *proxmox.Client) error {
			cfg, err := c.Config(ctx, proxmox.VMRef{Node: b.node, VMID: 100})
			if err == nil && (cfg.Cores == 0 || cfg.MemoryMB == 0 || cfg.Digest == "") {
				t.Errorf("config %+v: want cores, memory and a digest", cfg)
			}
			return err
		}},
		{"status", func(t *testing.T, b backend, c *proxmox.Client) error {
			u, err := c.Usage(ctx, proxmox.VMRef{Node: b.node, VMID: 101})
			if err == nil && u.Status != "running" && u.Status != "stopped" {
				t.Errorf("status %q", u.Status)
			}
			return err
		}},
		{"rrddata", func(t *testing.T, b backend, c *proxmox.Client) error {
			points, err := c.RRD(ctx, proxmox.VMRef{Node: b.node, VMID: 101}, "hour")
			if err == nil && len(points) == 0 {
				t.Error("no RRD points")
			}
			return err
		}},
		{"backups", func(t *testing.T, b backend, c *proxmox.Client) error {
			_, err := c.Backups(ctx, proxmox.VMRef{Node: b.node, VMID: 100}, "local")
			return err
		}},
		{"task that ended OK", func(t *testing.T, b backend, c *proxmox.Client) error {
			_, err := c.WaitTask(ctx, b.okTask(t))
			return err
		}},
		{"task that failed", func(t *testing.T, b backend, c *proxmox.Client) error {
			if _, err := c.WaitTask(ctx, b.failedTask(t)); !errors.Is(err, proxmox.ErrTaskFailed) {
				t.Errorf("WaitTask = %v, want ErrTaskFailed", err)
			}
			return nil
		}},
	}
	sims := simBackend(t)
	for _, b := range []backend{sims, recordedBackend()} {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				if err := tt.call(t, b, b.client(t)); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
