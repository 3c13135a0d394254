package proxmox_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/failure"
	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
)

func TestAgentPing(t *testing.T) {
	s := sim.New(sim.Config{TokenID: "root@pam!t", TokenSecret: "s", TaskDuration: 10 * time.Millisecond})
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	noAgent, _ := s.VM("pve1", 100)
	noAgent.VMID, noAgent.Name, noAgent.NoAgent = 110, "no-agent", true
	s.AddVM(noAgent)
	disabled, _ := s.VM("pve1", 100)
	disabled.VMID, disabled.Name = 111, "agent-off"
	disabled.Config["agent"] = "0"
	s.AddVM(disabled)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	c, err := proxmox.New(proxmox.Config{URL: ts.URL + "/api2/json", TokenID: "root@pam!t", TokenSecret: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the agents' start
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		vmid      int
		ready     bool
		permanent bool
		failed    bool
	}{
		{"running guest with an agent answers", 100, true, false, false},
		{"guest without an agent installed is not ready, without an error", 110, false, false, false},
		{"stopped VM is an error", 101, false, false, true},
		{"agent not enabled is an error", 111, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready, err := c.AgentPing(ctx, proxmox.VMRef{Node: "pve1", VMID: tc.vmid})
			if ready != tc.ready || (err != nil) != tc.failed || failure.IsPermanent(err) != tc.permanent {
				t.Errorf("ready %v, err %v", ready, err)
			}
		})
	}
	for _, tc := range []struct {
		vmid int
		want bool
	}{{100, true}, {111, false}} {
		cfg, err := c.Config(ctx, proxmox.VMRef{Node: "pve1", VMID: tc.vmid})
		if err != nil || cfg.AgentEnabled() != tc.want {
			t.Errorf("VM %d: AgentEnabled %v (%v), want %v", tc.vmid, cfg.AgentEnabled(), err, tc.want)
		}
	}
}
