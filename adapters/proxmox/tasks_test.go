package proxmox_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/proxmox"
	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/simkit"
)

// simClient returns a client of a simulator seeded with the demo VMs whose
// node pve2 has been up for 600 days and whose node pve1's clock runs
// 90 s ahead.
func simClient(t *testing.T) (*sim.Server, *proxmox.Client) {
	return newSim(t, sim.Config{
		NodeUptime:    map[string]time.Duration{"pve2": 600 * 24 * time.Hour},
		NodeClockSkew: map[string]time.Duration{"pve1": 90 * time.Second}})
}

func TestTaskWithWarningsSucceedsAndKeepsItsWarnings(t *testing.T) {
	s, c := simClient(t)
	ctx := context.Background()
	s.Inject(simkit.Fault{Op: "vzdump", Times: 1, TaskWarning: "unable to read guest agent"})
	upid, err := c.Backup(ctx, proxmox.VMRef{Node: "pve1", VMID: 100}, proxmox.BackupOptions{Storage: "local"})
	if err != nil {
		t.Fatal(err)
	}
	end, err := c.WaitTask(ctx, upid)
	if err != nil {
		t.Fatalf("WaitTask = %v; a task that ended with warnings succeeded", err)
	}
	if end.ExitStatus != "WARNINGS: 1" || !slices.Equal(end.Warnings, []string{"unable to read guest agent"}) {
		t.Errorf("end = %+v, want WARNINGS: 1 with the warning line", end)
	}
}

func TestUPIDWithNineDigitPStartIsAccepted(t *testing.T) {
	_, c := simClient(t)
	ctx := context.Background()
	upid, err := c.Power(ctx, proxmox.VMRef{Node: "pve2", VMID: 102}, proxmox.OpReset, proxmox.PowerOptions{})
	if err != nil {
		t.Fatalf("Power on a node up for 600 days = %v", err)
	}
	if _, err := c.WaitTask(ctx, upid); err != nil {
		t.Fatalf("WaitTask(%q) = %v", upid, err)
	}
}

func TestNodeTimeMeasuresTheNodesSkew(t *testing.T) {
	_, c := simClient(t)
	skew, uncertainty, err := c.NodeTime(context.Background(), "pve1")
	if err != nil {
		t.Fatal(err)
	}
	if d := skew - 90*time.Second; d < -uncertainty || d > uncertainty {
		t.Errorf("skew = %s ± %s, want 90s", skew, uncertainty)
	}
}

func TestTasksListsTasksOfTheVMSinceAStartTimeWithTheirUser(t *testing.T) {
	_, c := simClient(t)
	ctx := context.Background()
	ref := proxmox.VMRef{Node: "pve1", VMID: 100}
	skew, _, err := c.NodeTime(ctx, "pve1")
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Power(ctx, ref, proxmox.OpReset, proxmox.PowerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitTask(ctx, first)
	time.Sleep(1100 * time.Millisecond) // task start times are whole seconds
	since := time.Now().Add(skew).Truncate(time.Second)
	second, err := c.Power(ctx, ref, proxmox.OpReset, proxmox.PowerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := c.Tasks(ctx, ref, "qmreset", since)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].UPID != second || tasks[0].User != c.TokenID() {
		t.Errorf("tasks since %s = %+v, want only %s by %s", since, tasks, second, c.TokenID())
	}
}
