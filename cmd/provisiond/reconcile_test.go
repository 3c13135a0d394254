package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
	"github.com/hostfleet/provisiond/adapters/pterodactyl"
	pterosim "github.com/hostfleet/provisiond/adapters/pterodactyl/sim"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

// reconciler returns the system's reconciler with the given orphan grace.
func (s *system) reconciler(grace time.Duration) *jobs.Reconciler {
	s.t.Helper()
	providers, err := s.app.registry()
	if err != nil {
		s.t.Fatal(err)
	}
	r := s.app.reconciler(providers)
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
	if len(second.Destroyed) != 1 || second.Destroyed[0] != "proxmox VM 150 on pve1" {
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

func TestVerifyComparesAGameServerWithItsService(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	id := s.pteroServer(path)
	panel, err := s.app.pterodactyl()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if g, _ := s.ptero.Server(id); g.State != pterosim.StateRunning {
		t.Errorf("a provisioned game server is %s, want it started", g.State)
	}
	// Behind the fleet's back: the server given more memory and suspended
	// on the panel.
	srv, err := panel.Server(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	limits := srv.Limits
	limits.Memory = 8192
	if _, err := panel.UpdateBuild(ctx, id, pterodactyl.Build{Allocation: srv.Allocation, Limits: limits, FeatureLimits: srv.FeatureLimits}); err != nil {
		t.Fatal(err)
	}
	// Suspending on the panel stops the server, as Wings does.
	if err := panel.Suspend(ctx, id); err != nil {
		t.Fatal(err)
	}
	jobtest.Eventually(t, 10*time.Second, "the suspended game server to stop", func() bool { g, _ := s.ptero.Server(id); return g.State == pterosim.StateOffline })

	status, resp := s.do("POST", path+"/verify", "")
	if status != http.StatusOK {
		t.Fatalf("verify: %d %v", status, resp)
	}
	kinds := map[string]bool{}
	for _, d := range resp["drift"].([]any) {
		kinds[d.(map[string]any)["kind"].(string)] = true
	}
	if len(kinds) != 3 || !kinds[jobs.DriftPower] || !kinds[jobs.DriftPlan] || !kinds[jobs.DriftSuspension] {
		t.Errorf("drift %v, want power (fixed), plan and suspension", resp["drift"])
	}
	if got := resp["service"].(map[string]any); got["powerState"] != "stopped" {
		t.Errorf("recorded power state %v after verify, want it to follow the server (stopped)", got["powerState"])
	}

	// Its VMs and the panel's other servers aside, a round verifies it too.
	res, err := s.reconciler(time.Hour).Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Drifted[jobs.DriftSuspension] != 1 || res.Drifted[jobs.DriftPlan] != 1 {
		t.Errorf("round found %v, want the game server's suspension and plan", res.Drifted)
	}
}

func TestReconcilerDeletesOnlyLeftoverGameServersOfServicesItKnows(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	live := s.gameServer()
	left := s.gameServer()
	liveID, leftID := s.pteroServer(live), s.pteroServer(left)
	ctx := context.Background()
	// The second service ended without its server going (a termination
	// cut short), and a server carries a service this fleet does not know.
	leftSvc := uuid.MustParse(left[strings.LastIndex(left, "/")+1:])
	if err := s.q.SetServiceStatus(ctx, queries.SetServiceStatusParams{ID: leftSvc, Status: "terminated"}); err != nil {
		t.Fatal(err)
	}
	stranger, err := s.ptero.AddServer(pterosim.GameServer{Name: "stranger", ExternalID: uuid.NewString(), OwnerID: 3, EggID: 1,
		AllocationID: 30, Limits: pterosim.Limits{Memory: 512, Disk: 1024, IO: 500}})
	if err != nil {
		t.Fatal(err)
	}

	first, err := s.reconciler(time.Hour).Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Drifted[jobs.DriftOrphan] != 2 || len(first.Destroyed) != 0 {
		t.Fatalf("first round: %v, deleted %v; want two orphans seen, none deleted within the grace", first.Drifted, first.Destroyed)
	}
	second, err := s.reconciler(time.Nanosecond).Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("pterodactyl server %d", leftID); len(second.Destroyed) != 1 || second.Destroyed[0] != want {
		t.Errorf("second round deleted %v, want %s only", second.Destroyed, want)
	}
	for _, keep := range []int{liveID, stranger.ID} {
		if _, ok := s.ptero.Server(keep); !ok {
			t.Errorf("game server %d was deleted", keep)
		}
	}
}
