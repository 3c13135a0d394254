package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/hostfleet/provisiond/jobs"
)

// sshKey returns a fresh public key in authorized_keys format.
func sshKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// provision asks for a new VPS and returns the service and job ids.
func (s *system) provision(body string) (string, string) {
	s.t.Helper()
	status, resp := s.do("POST", "/api/services", body)
	if status != http.StatusAccepted {
		s.t.Fatalf("POST /api/services: status %d, want 202: %v", status, resp)
	}
	return resp["service"].(map[string]any)["id"].(string), resp["job"].(map[string]any)["id"].(string)
}

func TestProvisionMakesOneRunningVMFromTheTemplate(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	key := sshKey(t)
	body, _ := json.Marshal(map[string]any{
		"name": "vps-9", "provider": "proxmox", "plan": map[string]int{"cores": 2, "memoryMb": 2048, "diskGb": 50},
		"templateId": 9000, "hostname": "web9.example.com", "password": "correct horse battery", "sshKeys": []string{key},
	})
	svcID, jobID := s.provision(string(body))
	job := s.waitJob(jobID, 30*time.Second)
	if job["status"] != "succeeded" {
		t.Fatalf("provision ended %s: %v", job["status"], job["error"])
	}
	var vm struct {
		Node string
		VMID int
	}
	b, _ := json.Marshal(job["result"])
	json.Unmarshal(b, &vm)
	got, ok := s.sim.VM(vm.Node, vm.VMID)
	if !ok {
		t.Fatalf("no VM %d on %s", vm.VMID, vm.Node)
	}
	if got.Status != "running" || got.Cores != 2 || got.MemoryMB != 2048 || got.DiskGB != 50 || !slices.Contains(got.Tags, jobs.VMTag(uuid.MustParse(svcID))) {
		t.Errorf("VM = %+v; want running, 2 cores, 2048 MB, 50 GB, tagged svc-%s", got, svcID)
	}
	if n := s.sim.CountCalls("clone", ""); n != 1 {
		t.Errorf("clone called %d times, want once", n)
	}
	_, resp := s.do("GET", "/api/services/"+svcID, "")
	svc := resp["service"].(map[string]any)
	if svc["status"] != "active" || svc["powerState"] != "running" {
		t.Errorf("service is %v/%v, want active/running", svc["status"], svc["powerState"])
	}
	var args, sealed string
	err := s.db.QueryRow(context.Background(), "SELECT args::text, coalesce(encode(sealed_secrets, 'escape'), '') FROM jobs WHERE id = $1", jobID).Scan(&args, &sealed)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(args, "correct horse") || strings.Contains(sealed, "correct horse") || sealed != "" {
		t.Errorf("the password is in the job row (args %s, sealed %q); want it sealed and dropped when the job ended", args, sealed)
	}
}
