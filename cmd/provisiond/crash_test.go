package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
)

// stepsDone reads a job's finished steps from its checkpoint.
func (s *system) stepsDone(id string) []string {
	s.t.Helper()
	var raw []byte
	if err := s.db.QueryRow(context.Background(), "SELECT checkpoint FROM jobs WHERE id = $1", id).Scan(&raw); err != nil {
		s.t.Fatal(err)
	}
	var cp jobs.Checkpoint
	json.Unmarshal(raw, &cp)
	return cp.Done
}

// TestKilledWorkerAtEveryStepBoundaryLeavesOneVM kills a worker process
// with SIGKILL right after each step of a provision and of a reinstall has
// finished, lets another worker take the job over, and checks that the job
// succeeds with exactly one VM made by exactly one clone. Every simulator
// call is slowed down so that the gap between two steps is long enough to
// kill the worker in. The cases run in parallel, so asynq's minute before
// it hands a dead worker's task to another is spent about once.
func TestKilledWorkerAtEveryStepBoundaryLeavesOneVM(t *testing.T) {
	type kind struct {
		name  string
		steps []string
		start func(s *system) (service, job string)
		check func(t *testing.T, s *system, service string)
	}
	provision := kind{
		name:  "provision",
		steps: []string{"place", "clone", "configure", "resize"},
		start: func(s *system) (string, string) {
			return s.provision(`{"name":"vps","provider":"proxmox","plan":{"cores":2,"memoryMb":2048,"diskGb":50},"templateId":9000}`)
		},
		check: func(t *testing.T, s *system, service string) {
			var tagged []int
			for _, vm := range s.sim.VMs() {
				if slices.Contains(vm.Tags, jobs.VMTag(uuid.MustParse(service))) {
					tagged = append(tagged, vm.VMID)
				}
			}
			if len(tagged) != 1 || len(s.sim.VMs()) != len(s.services)+2 {
				t.Errorf("VMs tagged for the service: %v among %d VMs; want exactly one new VM", tagged, len(s.sim.VMs()))
			}
		},
	}
	reinstall := kind{
		name:  "reinstall",
		steps: []string{"inspect", "stop", "destroy", "clone", "configure", "resize"},
		start: func(s *system) (string, string) {
			svc := s.services["web-1"].ID.String()
			status, resp := s.do("POST", "/api/services/"+svc+"/reinstall", `{"templateId":9000}`)
			if status != 202 {
				s.t.Fatalf("reinstall: %d %v", status, resp)
			}
			return svc, resp["job"].(map[string]any)["id"].(string)
		},
		check: func(t *testing.T, s *system, _ string) {
			if vm := s.vm("web-1"); vm.Status != "running" || !slices.Contains(vm.Tags, jobs.VMTag(s.services["web-1"].ID)) {
				t.Errorf("VM 100 after the reinstall: %s, tags %v", vm.Status, vm.Tags)
			}
			if n := s.sim.CountCalls("destroy", ""); n != 1 {
				t.Errorf("destroy called %d times, want once", n)
			}
		},
	}
	game := kind{
		name:  "game provision",
		steps: []string{"create"},
		start: func(s *system) (string, string) { return s.provision(gameOrder) },
		check: func(t *testing.T, s *system, service string) {
			n := 0
			for _, g := range s.ptero.Servers() {
				if g.ExternalID == service {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d game servers for the service, want 1", n)
			}
		},
	}
	termination := kind{
		name:  "termination",
		steps: []string{"stop", "destroy"},
		start: func(s *system) (string, string) {
			resp := s.cancel("db-1", "immediately")
			return s.services["db-1"].ID.String(), resp["job"].(map[string]any)["id"].(string)
		},
		check: func(t *testing.T, s *system, _ string) {
			if _, ok := s.sim.VM("pve1", 101); ok {
				t.Error("the VM survived its termination")
			}
			if n := s.sim.CountTasks("qmdestroy", 101); n != 1 {
				t.Errorf("destroyed %d times, want once", n)
			}
		},
	}
	for _, k := range []kind{provision, reinstall, game, termination} {
		for _, after := range k.steps {
			t.Run(fmt.Sprintf("%s killed after %s", k.name, after), func(t *testing.T) {
				t.Parallel()
				s := newSystem(t, systemOpts{noWorker: true, taskDuration: 200 * time.Millisecond})
				s.sim.Inject(simkit.Fault{Latency: 150 * time.Millisecond})
				s.ptero.Inject(simkit.Fault{Latency: 150 * time.Millisecond})
				kill := s.startChildWorker()
				service, id := k.start(s)
				jobtest.Eventually(t, 60*time.Second, "step "+after+" to finish", func() bool {
					return slices.Contains(s.stepsDone(id), after)
				})
				killed := kill()
				s.sim.ClearFaults()
				s.ptero.ClearFaults()
				if job := s.job(id); job["status"] != "running" {
					t.Fatalf("after the crash the job is %v, want running", job["status"])
				}
				s.takeOver(killed)
				if job := s.waitJob(id, 60*time.Second); job["status"] != "succeeded" {
					t.Fatalf("job ended %s: %v", job["status"], job["error"])
				}
				if n := s.sim.CountCalls("clone", "") + s.ptero.CountCalls("servers.create", ""); n != 1 && k.name != "termination" {
					t.Errorf("clone or server create called %d times, want once", n)
				}
				k.check(t, s, service)
			})
		}
	}
}
