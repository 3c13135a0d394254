package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostfleet/provisiond/adapters/simkit"
)

// TestVPSJobsSurviveProviderFaults runs each VPS job kind against an
// injected fault on its key Proxmox call: a transient outage and a lock are
// retried until the job succeeds, an answer lost after the call was carried
// out is found again instead of repeated, and a task Proxmox ends in error
// fails the job with Proxmox's message.
func TestVPSJobsSurviveProviderFaults(t *testing.T) {
	web1 := func(s *system) string { return "/api/services/" + s.services["web-1"].ID.String() }
	provision := func(s *system) (string, string, string) {
		return "POST", "/api/services", `{"name":"vps","provider":"proxmox","plan":{"cores":1,"memoryMb":1024,"diskGb":20},"templateId":9000}`
	}
	on := func(path, method, body string) func(*system) (string, string, string) {
		return func(s *system) (string, string, string) { return method, web1(s) + path, body }
	}
	tests := []struct {
		name    string
		request func(*system) (method, path, body string)
		fault   simkit.Fault
		// task is the Proxmox task the fault's call starts; it must run once.
		task    string
		wantErr string // "" for success
	}{
		{"provision through a clone outage", provision,
			simkit.Fault{Op: "clone", Times: 2, Status: 500, Message: "got timeout"}, "qmclone", ""},
		{"provision whose clone answer is lost", provision,
			simkit.Fault{Op: "clone", Times: 1, Drop: true}, "qmclone", ""},
		{"provision whose configuration task fails", provision,
			simkit.Fault{Op: "config.update", Times: 1, TaskError: "unable to parse value of 'cores'"}, "qmconfig",
			"unable to parse value of 'cores'"},
		{"reinstall whose destroy answer is lost", on("/reinstall", "POST", `{"templateId":9000}`),
			simkit.Fault{Op: "destroy", Times: 1, Drop: true}, "qmdestroy", ""},
		{"upgrade of a VM locked by a backup", on("/upgrade", "POST", `{"diskGb":60}`),
			simkit.Fault{Op: "resize", Times: 2, Status: 500, Message: "VM is locked (backup)"}, "resize", ""},
		{"backup whose answer is lost", on("/backups", "POST", ""),
			simkit.Fault{Op: "vzdump", Times: 1, Drop: true}, "vzdump", ""},
		{"rescue through a configuration outage", on("/rescue", "POST", ""),
			simkit.Fault{Op: "config.update", Times: 2, Status: 503}, "qmconfig", ""},
		// Every other task-starting call, its answer lost: found again by
		// its intent, never started a second time.
		{"stop whose answer is lost", on("/action", "POST", `{"action":"stop"}`),
			simkit.Fault{Op: "stop", Times: 1, Drop: true}, "qmstop", ""},
		{"restart whose shutdown answer is lost", on("/action", "POST", `{"action":"restart"}`),
			simkit.Fault{Op: "shutdown", Times: 1, Drop: true}, "qmshutdown", ""},
		{"restart whose start answer is lost", on("/action", "POST", `{"action":"restart"}`),
			simkit.Fault{Op: "start", Times: 1, Drop: true}, "qmstart", ""},
		{"reset whose answer is lost", on("/action", "POST", `{"action":"reset"}`),
			simkit.Fault{Op: "reset", Times: 1, Drop: true}, "qmreset", ""},
		{"suspend whose answer is lost", on("/action", "POST", `{"action":"suspend"}`),
			simkit.Fault{Op: "suspend", Times: 1, Drop: true}, "qmpause", ""},
		{"upgrade whose resize answer is lost", on("/upgrade", "POST", `{"diskGb":60}`),
			simkit.Fault{Op: "resize", Times: 1, Drop: true}, "resize", ""},
		{"rescue whose configuration answer is lost", on("/rescue", "POST", ""),
			simkit.Fault{Op: "config.update", Times: 1, Drop: true}, "qmconfig", ""},
		{"restore whose answer is lost", func(s *system) (string, string, string) {
			return "POST", web1(s) + "/backups/" + s.backups("web-1")[0]["id"].(string), ""
		}, simkit.Fault{Op: "qemu.create", Times: 1, Drop: true}, "qmrestore", ""},
		{"backup delete whose answer is lost", func(s *system) (string, string, string) {
			return "DELETE", web1(s) + "/backups/" + s.backups("web-1")[0]["id"].(string), ""
		}, simkit.Fault{Op: "content.delete", Times: 1, Drop: true}, "imgdel", ""},
		{"reset on a node whose clock is 5 minutes behind, its answer lost", on("/action", "POST", `{"action":"reset"}`),
			simkit.Fault{Op: "reset", Times: 1, Drop: true}, "qmreset", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{})
			if strings.Contains(tt.name, "clock is 5 minutes behind") {
				s.sim.SetNodeClockSkew("pve1", -5*time.Minute)
			}
			method, path, body := tt.request(s)
			s.sim.Inject(tt.fault)
			status, resp := s.do(method, path, body)
			if status != http.StatusAccepted {
				t.Fatalf("%s %s: %d %v", method, path, status, resp)
			}
			job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 60*time.Second)
			if tt.wantErr != "" {
				if msg, _ := job["error"].(string); job["status"] != "failed" || !strings.Contains(msg, tt.wantErr) {
					t.Fatalf("job %s (%v); want failed saying %q", job["status"], job["error"], tt.wantErr)
				}
			} else if job["status"] != "succeeded" {
				t.Fatalf("job %s after %v attempts (%v); want succeeded", job["status"], job["attempts"], job["error"])
			} else if !tt.fault.Drop && job["attempts"].(float64) < 2 {
				// A lost answer may be found again in the same attempt (the
				// VM already shows the change), or in the next: what counts
				// is that the task runs once.
				t.Fatalf("job succeeded after %v attempts; want a retry through the outage", job["attempts"])
			}
			if n := s.sim.CountTasks(tt.task, 0); n != 1 {
				t.Errorf("%s ran %d times, want once", tt.task, n)
			}
		})
	}
}

// TestGameJobsSurvivePanelFaults does the same for game servers: the panel
// failing, losing the answer to a create, and an install that fails.
func TestGameJobsSurvivePanelFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   simkit.Fault
		wantErr string
	}{
		{"create through a panel outage", simkit.Fault{Op: "servers.create", Times: 2, Status: 502}, ""},
		{"create whose answer is lost", simkit.Fault{Op: "servers.create", Times: 1, Drop: true}, ""},
		{"install that fails", simkit.Fault{Op: "servers.create", Times: 1, TaskError: "install script exited 1"}, "install failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{})
			s.ptero.Inject(tt.fault)
			svc, id := s.provision(gameOrder)
			job := s.waitJob(id, 60*time.Second)
			if tt.wantErr != "" {
				if msg, _ := job["error"].(string); job["status"] != "failed" || !strings.Contains(msg, tt.wantErr) {
					t.Fatalf("job %s (%v); want failed saying %q", job["status"], job["error"], tt.wantErr)
				}
				return
			}
			if job["status"] != "succeeded" {
				t.Fatalf("job %s: %v", job["status"], job["error"])
			}
			n := 0
			for _, g := range s.ptero.Servers() {
				if g.ExternalID == svc {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d servers for the service, want 1", n)
			}
		})
	}
}

// TestGameJobKindsSurvivePanelFaults runs the other game job kinds through
// a fault on their key panel call.
func TestGameJobKindsSurvivePanelFaults(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		fault                    simkit.Fault
		// op is the panel call that must have been carried out once.
		op string
	}{
		{"reinstall through a panel outage", "POST", "/reinstall", "", simkit.Fault{Op: "servers.reinstall", Times: 2, Status: 503}, ""},
		{"plan change through a panel outage", "POST", "/change-plan",
			`{"plan":{"memoryMb":4096,"diskMb":10240,"cpu":200,"databases":1,"allocations":1,"backups":2,"nest":1,"egg":1,"locations":[1],"user":2}}`,
			simkit.Fault{Op: "servers.build", Times: 1, Status: 502}, ""},
		{"backup whose answer is lost", "POST", "/backups", `{"note":"nightly"}`, simkit.Fault{Op: "backups.create", Times: 1, Drop: true}, "backups.create"},
		{"start through a panel outage", "POST", "/action", `{"action":"start"}`, simkit.Fault{Op: "client.power", Times: 2, Status: 500}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t, systemOpts{})
			path := s.gameServer()
			s.ptero.Inject(tt.fault)
			job := s.runJob(tt.method, path+tt.path, tt.body)
			if job["attempts"].(float64) < 2 {
				t.Errorf("succeeded after %v attempts; want a retry", job["attempts"])
			}
			if tt.op != "" {
				var ok int
				for _, c := range s.ptero.Calls() {
					if c.Op == tt.op && c.Status < 300 {
						ok++
					}
				}
				if ok != 1 {
					t.Errorf("%s carried out %d times, want once", tt.op, ok)
				}
			}
		})
	}
}
