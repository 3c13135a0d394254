package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostfleet/provisiond/adapters/simkit"
	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
)

// cancel cancels a service through the API and returns the answer.
func (s *system) cancel(service, when string) map[string]any {
	s.t.Helper()
	status, resp := s.do("POST", "/api/services/"+s.services[service].ID.String()+"/cancel", `{"when":"`+when+`","cancellationReason":"moving on"}`)
	if status != http.StatusAccepted && status != http.StatusOK {
		s.t.Fatalf("cancel %s: %d %v", service, status, resp)
	}
	return resp
}

func (s *system) service(name string) map[string]any {
	s.t.Helper()
	_, resp := s.do("GET", "/api/services/"+s.services[name].ID.String(), "")
	return resp["service"].(map[string]any)
}

func TestCancelImmediatelySuspendsAndTerminatesAfterTheGrace(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	resp := s.cancel("web-1", "immediately")
	jobID := resp["job"].(map[string]any)["id"].(string)
	if resp["job"].(map[string]any)["status"] != "scheduled" {
		t.Errorf("termination job is %v, want scheduled", resp["job"].(map[string]any)["status"])
	}
	jobtest.Eventually(t, 10*time.Second, "the VM to be paused", func() bool { vm := s.vm("web-1"); return vm.Paused })
	job := s.waitJob(jobID, 30*time.Second)
	if job["status"] != "succeeded" {
		t.Fatalf("termination ended %s: %v", job["status"], job["error"])
	}
	if _, ok := s.sim.VM("pve1", 100); ok {
		t.Error("the VM still exists after its termination")
	}
	if svc := s.service("web-1"); svc["status"] != "terminated" {
		t.Errorf("service after termination: %v", svc["status"])
	}
	if n := s.sim.CountCalls("content.delete", ""); n != 2 {
		t.Errorf("deleted %d backups, want the 2 it had", n)
	}
	if status, resp := s.do("POST", "/api/services/"+s.services["web-1"].ID.String()+"/action", `{"action":"start"}`); status != http.StatusConflict {
		t.Errorf("action on a terminated service: %d %v, want 409", status, resp)
	}
}

func TestCancelAtPeriodEndTerminatesThenAndOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := "/api/services/" + s.services["db-1"].ID.String()
	end := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)
	if status, resp := s.do("POST", path+"/renew", `{"billingPeriodEnd":"`+end+`"}`); status != http.StatusOK {
		t.Fatalf("renew: %d %v", status, resp)
	}
	first := s.cancel("db-1", "end_of_billing_period")
	second := s.cancel("db-1", "end_of_billing_period")
	id := first["job"].(map[string]any)["id"].(string)
	if second["job"].(map[string]any)["id"] != id {
		t.Errorf("a second cancel made job %v, want the first one %s", second["job"].(map[string]any)["id"], id)
	}
	if vm := s.vm("db-1"); vm.Paused {
		t.Error("a cancellation at the period's end suspended the VM now")
	}
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("termination ended %s: %v", job["status"], job["error"])
	}
	if n := s.sim.CountTasks("qmdestroy", 101); n != 1 {
		t.Errorf("destroyed %d times, want once", n)
	}
}

func TestWithdrawnCancellationNeverFires(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	resp := s.cancel("web-1", "immediately")
	id := resp["job"].(map[string]any)["id"].(string)
	jobtest.Eventually(t, 10*time.Second, "the VM to be paused", func() bool { return s.vm("web-1").Paused })
	status, resp := s.do("POST", "/api/services/"+s.services["web-1"].ID.String()+"/withdraw-cancellation", "")
	if status != http.StatusOK || resp["service"].(map[string]any)["status"] == "terminated" {
		t.Fatalf("withdraw: %d %v", status, resp)
	}
	if job := s.job(id); job["status"] != "cancelled" {
		t.Errorf("termination job after the withdrawal: %v", job["status"])
	}
	jobtest.Eventually(t, 10*time.Second, "the VM to run again", func() bool { vm := s.vm("web-1"); return !vm.Paused && vm.Status == "running" })
	time.Sleep(3 * time.Second) // past the grace
	if n := s.sim.CountCalls("destroy", ""); n != 0 {
		t.Errorf("a withdrawn cancellation destroyed the VM %d times", n)
	}
	if status, _ := s.do("POST", "/api/services/"+s.services["web-1"].ID.String()+"/withdraw-cancellation", ""); status != http.StatusConflict {
		t.Errorf("withdrawing again: %d, want 409", status)
	}
}

func TestWithdrawAfterTheTerminationStartedIsRefused(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	s.sim.Inject(simkit.Fault{Op: "destroy", Hang: true}) // the termination stays running
	s.cancel("web-1", "immediately")
	jobtest.Eventually(t, 20*time.Second, "the termination to reach the destroy", func() bool { return s.sim.CountCalls("destroy", "") > 0 })
	status, resp := s.do("POST", "/api/services/"+s.services["web-1"].ID.String()+"/withdraw-cancellation", "")
	if status != http.StatusConflict || resp["errorKey"] != "termination_started" {
		t.Errorf("withdraw after the start: %d %v, want 409 termination_started", status, resp)
	}
}

func TestRenewMovesAPeriodEndTermination(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := "/api/services/" + s.services["db-1"].ID.String()
	s.do("POST", path+"/renew", `{"billingPeriodEnd":"`+time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)+`"}`)
	id := s.cancel("db-1", "end_of_billing_period")["job"].(map[string]any)["id"].(string)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	status, resp := s.do("POST", path+"/renew", `{"billingPeriodEnd":"`+later+`"}`)
	if status != http.StatusOK || resp["cancellation"].(map[string]any)["terminateAt"] != later {
		t.Fatalf("renew after cancel: %d %v", status, resp)
	}
	time.Sleep(4 * time.Second) // past the old end
	if job := s.job(id); job["status"] != "scheduled" {
		t.Errorf("termination job after the renewal is %v, want still scheduled", job["status"])
	}
	if _, ok := s.sim.VM("pve1", 101); !ok {
		t.Error("the VM was destroyed at the old period end")
	}
}

func TestTerminationSurvivesRedisLosingItsTask(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	id := s.cancel("web-1", "immediately")["job"].(map[string]any)["id"].(string)
	// Redis restarted without its data: the scheduled task is gone.
	rdb := jobtest.RedisClient(t, s.app.redis)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := s.app.sweeper().Sweep(context.Background())
	if err != nil || res.Terminations != 1 {
		t.Fatalf("reconciliation: %+v %v; want the termination enqueued again", res, err)
	}
	if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("termination ended %s: %v", job["status"], job["error"])
	}
	if n := s.sim.CountTasks("qmdestroy", 100); n != 1 {
		t.Errorf("destroyed %d times, want once", n)
	}
	if res, _ := s.app.sweeper().Sweep(context.Background()); res.Terminations != 0 {
		t.Errorf("a second reconciliation enqueued %d terminations, want none", res.Terminations)
	}
}

func TestCancellingAScheduledTerminationJobRemovesIt(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := "/api/services/" + s.services["db-1"].ID.String()
	s.do("POST", path+"/renew", `{"billingPeriodEnd":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)
	id := s.cancel("db-1", "end_of_billing_period")["job"].(map[string]any)["id"].(string)
	status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", "")
	if status != http.StatusOK || resp["job"].(map[string]any)["status"] != "cancelled" {
		t.Fatalf("cancel of the scheduled termination: %d %v", status, resp)
	}
	if _, err := s.app.inspector().GetTaskInfo("default", id); err == nil {
		t.Error("the scheduled task is still in asynq")
	}
	if svc := s.service("db-1"); svc["status"] == "terminated" {
		t.Errorf("service after its termination job was cancelled: %v", svc)
	}
	svc, err := s.q.GetService(context.Background(), s.services["db-1"].ID)
	if err != nil || svc.TerminationJobID.Valid {
		t.Errorf("the service still counts as cancelled (%v)", err)
	}
}

func TestResumeForPaymentDoesNotUndoTheCancellationsSuspension(t *testing.T) {
	t.Parallel()
	// The termination must not come while the test looks (the default 2 s
	// grace can pass on a loaded machine).
	s := newSystem(t, systemOpts{env: map[string]string{"CANCEL_GRACE": "1h"}})
	path := "/api/services/" + s.services["web-1"].ID.String()
	s.runJob("POST", path+"/action", `{"action":"suspend"}`) // dunning
	s.cancel("web-1", "immediately")
	jobtest.Eventually(t, 10*time.Second, "the cancellation's suspension to be recorded", func() bool {
		svc, err := s.q.GetService(context.Background(), s.services["web-1"].ID)
		return err == nil && len(svc.Suspensions) == 2
	})
	s.runJob("POST", path+"/action", `{"action":"resume"}`) // paid
	if vm := s.vm("web-1"); !vm.Paused {
		t.Error("resuming for the payment resumed a service its cancellation suspends")
	}
	if n := s.sim.CountTasks("qmpause", 100); n != 1 {
		t.Errorf("paused %d times, want once (the second reason needs no provider call)", n)
	}
	if n := s.sim.CountTasks("qmresume", 100); n != 0 {
		t.Errorf("resumed %d times, want none while the cancellation holds", n)
	}
}

// withExtraIP gives a demo service an additional IP, configured on its VM.
func (s *system) withExtraIP(name, ip string, periodEnd time.Time) {
	s.t.Helper()
	vm := s.vm(name)
	vm.Config["ipconfig1"] = "ip=" + ip + "/24,gw=203.0.113.1"
	s.sim.AddVM(vm)
	s.setPlan(name, jobs.Plan{Cores: vm.Cores, MemoryMB: vm.MemoryMB, DiskGB: vm.DiskGB, AdditionalIPs: []string{ip}})
	end := periodEnd.UTC().Format(time.RFC3339)
	if status, resp := s.do("POST", "/api/services/"+s.services[name].ID.String()+"/renew", `{"billingPeriodEnd":"`+end+`"}`); status != http.StatusOK {
		s.t.Fatalf("renew: %d %v", status, resp)
	}
}

func TestCancelledIPIsReleasedAtPeriodEnd(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	s.withExtraIP("web-1", "203.0.113.7", time.Now().Add(2*time.Second))
	path := "/api/services/" + s.services["web-1"].ID.String()
	status, resp := s.do("POST", path+"/ips/cancel", `{"ip":"203.0.113.7"}`)
	if status != http.StatusAccepted {
		t.Fatalf("ips/cancel: %d %v", status, resp)
	}
	if job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("release ended %s: %v", job["status"], job["error"])
	}
	if cfg := s.vm("web-1").Config["ipconfig1"]; cfg != "" {
		t.Errorf("ipconfig1 after the release: %q, want it gone", cfg)
	}
	_, resp = s.do("GET", path+"/upgrade", "")
	if ips := resp["plan"].(map[string]any)["additionalIps"]; ips != nil {
		t.Errorf("the plan still lists %v", ips)
	}
}

func TestUndoneIPCancellationKeepsTheIP(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	s.withExtraIP("db-1", "203.0.113.9", time.Now().Add(time.Hour))
	path := "/api/services/" + s.services["db-1"].ID.String()
	s.do("POST", path+"/ips/cancel", `{"ip":"203.0.113.9"}`)
	status, resp := s.do("DELETE", path+"/ips/cancel", `{"ip":"203.0.113.9"}`)
	if status != http.StatusOK || resp["job"].(map[string]any)["status"] != "cancelled" {
		t.Fatalf("undo: %d %v", status, resp)
	}
	if status, _ := s.do("DELETE", path+"/ips/cancel", `{"ip":"203.0.113.9"}`); status != http.StatusNotFound {
		t.Errorf("undo twice: %d, want 404", status)
	}
	if status, _ := s.do("POST", path+"/ips/cancel", `{"ip":"198.51.100.1"}`); status != http.StatusNotFound {
		t.Errorf("cancel of an address the service does not have: %d, want 404", status)
	}
	if status, _ := s.do("POST", path+"/ips/cancel", `{"ip":"not an ip"}`); status != http.StatusBadRequest {
		t.Errorf("cancel of a malformed address: %d, want 400", status)
	}
}

// jobRequests start one job of each kind on a fresh system's demo services.
var jobRequests = []struct {
	kind               string
	method, path, body string
	service            string // demo service; "" for a new one (POST /api/services)
	game               bool   // on a game server
}{
	{kind: "service.power", method: "POST", path: "/action", body: `{"action":"restart"}`, service: "web-1"},
	{kind: "vps.provision", method: "POST", body: `{"name":"v","provider":"proxmox","plan":{"cores":1,"memoryMb":512,"diskGb":10},"templateId":9000}`},
	{kind: "vps.reinstall", method: "POST", path: "/reinstall", body: `{"templateId":9000}`, service: "web-1"},
	{kind: "vps.resize", method: "POST", path: "/upgrade", body: `{"cores":4}`, service: "web-1"},
	{kind: "vps.backup", method: "POST", path: "/backups", service: "web-1"},
	{kind: "vps.rescue", method: "POST", path: "/rescue", service: "web-1"},
	{kind: "game.reinstall", method: "POST", path: "/reinstall", game: true},
	{kind: "game.backup", method: "POST", path: "/backups", game: true},
}

// startJob starts the request's job and returns its id.
func (s *system) startJob(method, path, body string) string {
	s.t.Helper()
	status, resp := s.do(method, path, body)
	if status != http.StatusAccepted {
		s.t.Fatalf("%s %s: %d %v", method, path, status, resp)
	}
	return resp["job"].(map[string]any)["id"].(string)
}

func TestCancelEachKindWhileQueuedAndWhileRunning(t *testing.T) {
	for _, rq := range jobRequests {
		for _, when := range []string{"queued", "running"} {
			if when == "queued" && rq.game {
				continue // a game server needs a worker to exist first
			}
			t.Run(rq.kind+" "+when, func(t *testing.T) {
				t.Parallel()
				// Without a worker a job stays queued; with one, slow
				// provider calls keep it running long enough to cancel.
				s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond, noWorker: when == "queued"})
				path := "/api/services"
				if rq.game {
					path = s.gameServer()
				} else if rq.service != "" {
					path += "/" + s.services[rq.service].ID.String()
				}
				s.sim.Inject(simkit.Fault{Latency: 300 * time.Millisecond})
				s.ptero.Inject(simkit.Fault{Latency: 300 * time.Millisecond})
				id := s.startJob(rq.method, path+rq.path, rq.body)
				if when == "running" {
					jobtest.Eventually(t, 20*time.Second, "the job to run", func() bool { return s.job(id)["status"] == "running" })
				}
				status, resp := s.do("POST", "/api/jobs/"+id+"/cancel", "")
				if status == http.StatusConflict && resp["errorKey"] == "job_committed" {
					// Past its point of no return: carried through.
					if job := s.waitJob(id, 30*time.Second); job["status"] != "succeeded" {
						t.Fatalf("job past its point of no return ended %s (%v); want succeeded", job["status"], job["error"])
					}
					return
				}
				if status != http.StatusOK && status != http.StatusAccepted {
					t.Fatalf("cancel: %d %v", status, resp)
				}
				job := s.waitJob(id, 30*time.Second)
				if msg, _ := job["error"].(string); job["status"] != "cancelled" || msg == "" {
					t.Fatalf("job ended %s (%q); want cancelled, saying where it stopped", job["status"], msg)
				}
				if when == "queued" {
					row, err := s.q.GetJob(context.Background(), uuid.MustParse(id))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := s.app.inspector().GetTaskInfo(row.Queue, id); err == nil {
						t.Error("the cancelled job's task is still queued")
					}
				}
			})
		}
	}
}

func TestTerminationDaysAwayFiresWhenTheClockReachesIt(t *testing.T) {
	t.Parallel()
	// The real 48 h grace, with the API's clock 48 h less 2 s behind: the
	// termination is scheduled through asynq for 2 s from now.
	s := newSystem(t, systemOpts{env: map[string]string{"CANCEL_GRACE": "48h"},
		clock: func() time.Time { return time.Now().Add(2*time.Second - 48*time.Hour) }})
	resp := s.cancel("db-1", "immediately")
	at, err := time.Parse(time.RFC3339Nano, resp["cancellation"].(map[string]any)["terminateAt"].(string))
	if err != nil || time.Until(at) > 3*time.Second {
		t.Fatalf("terminateAt %v (%v), want about 2 s from now", at, err)
	}
	if job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("termination ended %s: %v", job["status"], job["error"])
	}
	if _, ok := s.sim.VM("pve1", 101); ok {
		t.Error("the VM survived its termination")
	}
}

func TestCancelledGameServerIsSuspendedThenDeleted(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	path := s.gameServer()
	status, resp := s.do("POST", path+"/cancel", `{"when":"immediately"}`)
	if status != http.StatusAccepted {
		t.Fatalf("cancel: %d %v", status, resp)
	}
	svcID := strings.TrimPrefix(path, "/api/services/")
	jobtest.Eventually(t, 10*time.Second, "the game server to be suspended", func() bool {
		for _, g := range s.ptero.Servers() {
			if g.ExternalID == svcID {
				return g.Status == "suspended"
			}
		}
		return false
	})
	if job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("termination ended %s: %v", job["status"], job["error"])
	}
	for _, g := range s.ptero.Servers() {
		if g.ExternalID == svcID {
			t.Errorf("game server %d survived its termination", g.ID)
		}
	}
}

func TestCancellationDuringALongJobQueuesTheSuspension(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond, env: map[string]string{"CANCEL_GRACE": "1h"}})
	backup := s.startJob("POST", "/api/services/"+s.services["web-1"].ID.String()+"/backups", "")
	jobtest.Eventually(t, 10*time.Second, "the backup to run", func() bool { return s.sim.CountTasks("vzdump", 100) == 1 })
	resp := s.cancel("web-1", "immediately")
	suspension, ok := resp["suspensionJob"].(map[string]any)
	if !ok {
		t.Fatalf("cancellation answer %v, want the suspension's job", resp)
	}
	id := suspension["id"].(string)
	jobtest.Eventually(t, 10*time.Second, "the suspension to wait for the backup", func() bool {
		job := s.job(id)
		msg, _ := job["error"].(string)
		return job["status"] == "retrying" && strings.Contains(msg, backup)
	})
	if job := s.waitJob(backup, 30*time.Second); job["status"] != "succeeded" {
		t.Fatalf("backup %s: %v", job["status"], job["error"])
	}
	if job := s.waitJob(id, 60*time.Second); job["status"] != "succeeded" {
		t.Fatalf("suspension %s: %v", job["status"], job["error"])
	}
	if vm := s.vm("web-1"); !vm.Paused {
		t.Error("the VM runs after the suspension queued behind the backup")
	}
	if got := s.service("web-1"); got["status"] != "suspended" {
		t.Errorf("service %v, want suspended", got["status"])
	}
}

func TestWithdrawnCancellationDropsTheSuspensionStillWaiting(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{taskDuration: 500 * time.Millisecond, env: map[string]string{"CANCEL_GRACE": "1h"}})
	path := "/api/services/" + s.services["web-1"].ID.String()
	backup := s.startJob("POST", path+"/backups", "")
	jobtest.Eventually(t, 10*time.Second, "the backup to run", func() bool { return s.sim.CountTasks("vzdump", 100) == 1 })
	resp := s.cancel("web-1", "immediately")
	suspension := resp["suspensionJob"].(map[string]any)["id"].(string)
	if status, resp := s.do("POST", path+"/withdraw-cancellation", ""); status != http.StatusOK {
		t.Fatalf("withdraw: %d %v", status, resp)
	}
	s.waitJob(backup, 30*time.Second)
	if job := s.waitJob(suspension, 60*time.Second); job["status"] != "succeeded" {
		t.Fatalf("suspension job %s: %v", job["status"], job["error"])
	}
	if vm := s.vm("web-1"); vm.Paused || s.sim.CountTasks("qmpause", 100) != 0 {
		t.Error("a suspension queued for a cancellation that was withdrawn paused the VM")
	}
	if got := s.service("web-1"); got["status"] != "active" {
		t.Errorf("service %v, want active", got["status"])
	}
}
