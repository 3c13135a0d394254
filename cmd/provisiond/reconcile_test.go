package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/queries"
)

// reconciler returns the system's reconciler with the given orphan grace.
func (s *system) reconciler(grace time.Duration) *jobs.Reconciler {
	s.t.Helper()
	px, err := s.app.proxmox()
	if err != nil {
		s.t.Fatal(err)
	}
	r := s.app.reconciler(px)
	r.OrphanGrace = grace
	return r
}

func TestVerifyFindsDriftFixesThePowerStateAndMarksAForeignVM(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	web1, db1 := s.services["web-1"].ID.String(), s.services["db-1"].ID.String()
	// Behind the fleet's back: web-1's VM stopped, db-1's VM given more
	// cores than its plan, game-1's VMID handed to someone else.
	vm := s.vm("web-1")
	vm.Status = "stopped"
	s.sim.AddVM(vm)
	vm = s.vm("db-1")
	vm.Cores = 16
	s.sim.AddVM(vm)
	s.foreignVM("game-1")

	status, resp := s.do("POST", "/api/services/"+web1+"/verify", "")
	if status != http.StatusOK {
		t.Fatalf("verify: %d %v", status, resp)
	}
	drift := resp["drift"].([]any)
	if len(drift) != 1 || drift[0].(map[string]any)["kind"] != jobs.DriftPower || drift[0].(map[string]any)["fixed"] != true {
		t.Errorf("drift of web-1 %v, want the power state, fixed", drift)
	}
	if got := resp["service"].(map[string]any); got["powerState"] != "stopped" || got["verifiedAt"] == nil {
		t.Errorf("web-1 after verify: %v/%v, want the recorded power state to follow the VM", got["powerState"], got["verifiedAt"])
	}

	res, err := s.reconciler(time.Hour).Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Drifted[jobs.DriftPlan] != 1 || res.Drifted[jobs.DriftForeign] != 1 || res.Drifted[jobs.DriftPower] != 0 {
		t.Errorf("round found %v; want one plan drift (db-1) and one foreign VM (game-1), the power state fixed already", res.Drifted)
	}
	got := s.serviceByID(db1)
	if d, _ := got["drift"].([]any); len(d) != 1 || !strings.Contains(d[0].(map[string]any)["detail"].(string), "cores 16 (plan 4)") {
		t.Errorf("db-1's recorded drift %v, want its cores", got["drift"])
	}
	if got := s.service("game-1"); got["status"] != "needs_repair" {
		t.Errorf("game-1 with another's VM at its VMID is %v, want needs_repair", got["status"])
	}
}

func TestReconcilerDestroysOnlyLeftoverVMsOfServicesItKnows(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	web1 := s.services["web-1"].ID
	// A leftover clone of web-1 (its service points at VM 100), and a VM
	// tagged for a service this fleet does not know.
	s.sim.AddVM(sim.VM{Node: "pve1", VMID: 150, Status: "running", Tags: []string{"provisiond", jobs.VMTag(web1)}})
	if _, err := s.q.ReserveVMID(context.Background(), queries.ReserveVMIDParams{Vmid: 150, ServiceID: web1}); err != nil {
		t.Fatal(err)
	}
	s.sim.AddVM(sim.VM{Node: "pve1", VMID: 151, Status: "running", Tags: []string{"svc-5b7c0c2e-6f3f-4d8e-9f0e-1c2d3e4f5a6b"}})
	// An operator's clone of web-1's VM, at a VMID the fleet never gave it.
	s.sim.AddVM(sim.VM{Node: "pve1", VMID: 152, Status: "stopped", Tags: []string{"provisiond", jobs.VMTag(web1)}})

	first, err := s.reconciler(time.Hour).Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if first.Drifted[jobs.DriftOrphan] != 2 || len(first.Destroyed) != 0 {
		t.Fatalf("first round: %v, destroyed %v; want two orphans seen, none destroyed within the grace", first.Drifted, first.Destroyed)
	}
	second, err := s.reconciler(time.Nanosecond).Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Destroyed) != 1 || second.Destroyed[0].VMID != 150 {
		t.Errorf("second round destroyed %v, want the leftover VM 150 only", second.Destroyed)
	}
	if _, ok := s.sim.VM("pve1", 150); ok {
		t.Error("the leftover VM survived")
	}
	if _, ok := s.sim.VM("pve1", 151); !ok {
		t.Error("the VM of a service this fleet does not know was destroyed")
	}
	if _, ok := s.sim.VM("pve1", 152); !ok {
		t.Error("an operator's clone at a VMID the fleet never reserved was destroyed")
	}
	if vm := s.vm("web-1"); vm.Status != "running" || !slices.Contains(vm.Tags, jobs.VMTag(web1)) {
		t.Errorf("web-1's own VM after the rounds: %+v", vm)
	}
}
