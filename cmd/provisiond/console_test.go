package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hostfleet/provisiond/jobs"
	"github.com/hostfleet/provisiond/jobs/jobtest"
	"github.com/hostfleet/provisiond/queries"
)

// browser is a VNC client on the console gateway's websocket.
type browser struct {
	t    *testing.T
	conn *websocket.Conn
	buf  bytes.Buffer
}

// dialConsole opens the gateway's websocket at path; it returns the
// answer's status when the gateway refuses the upgrade.
func (s *system) dialConsole(path string) (*browser, int) {
	s.t.Helper()
	url := "ws" + strings.TrimPrefix(s.api, "http") + path
	conn, res, err := websocket.DefaultDialer.Dial(url, http.Header{"Sec-WebSocket-Protocol": {"binary"}})
	if err != nil {
		if res == nil {
			s.t.Fatalf("dial %s: %v", path, err)
		}
		body, _ := io.ReadAll(res.Body)
		s.t.Logf("gateway answered %d: %s", res.StatusCode, body)
		return nil, res.StatusCode
	}
	s.t.Cleanup(func() { conn.Close() })
	return &browser{t: s.t, conn: conn}, http.StatusSwitchingProtocols
}

func (b *browser) read(n int) []byte {
	b.t.Helper()
	for b.buf.Len() < n {
		b.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := b.conn.ReadMessage()
		if err != nil {
			b.t.Fatalf("read: %v", err)
		}
		b.buf.Write(msg)
	}
	return b.buf.Next(n)
}

func (b *browser) send(p ...byte) {
	b.t.Helper()
	if err := b.conn.WriteMessage(websocket.BinaryMessage, p); err != nil {
		b.t.Fatalf("write: %v", err)
	}
}

func TestConsoleRelaysVNCWithoutHandingOutTheTicket(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := "/api/services/" + s.services["web-1"].ID.String()
	job := s.runJob("POST", svc+"/console", "")
	secrets, _ := job["secrets"].(map[string]any)
	socket, _ := secrets["url"].(string)
	embed, _ := secrets["embedUrl"].(string)
	if !strings.HasPrefix(socket, "/api/console/") || !strings.HasPrefix(embed, "/console/") {
		t.Fatalf("console job secrets %v: want the one-time URLs", job["secrets"])
	}
	all, _ := json.Marshal(job)
	again, _ := json.Marshal(s.job(job["id"].(string)))
	for _, leak := range []string{"PVEVNC", "PVE:", "vncwebsocket", "8006"} {
		if bytes.Contains(all, []byte(leak)) || bytes.Contains(again, []byte(leak)) {
			t.Errorf("the console job shows %q", leak)
		}
	}

	// An iframe sends no key: the page's one-time token is its credential.
	status, page := s.embedPage(s.api + embed)
	if status != http.StatusOK || !strings.Contains(page, "core/rfb.js") || !strings.Contains(page, socket) {
		t.Errorf("embed page: %d %s", status, page)
	}
	if status, page := s.embedPage(s.api + "/console/forged-token"); status != http.StatusGone || !strings.Contains(page, "session has ended") {
		t.Errorf("embed page of a forged token: %d %s, want 410 and a page that says the session ended", status, page)
	}
	if res, err := s.client.Get(s.api + "/console/novnc/core/rfb.js"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("noVNC module: %v %v", res, err)
	}

	b, status := s.dialConsole(socket)
	if b == nil {
		t.Fatalf("gateway refused the session: %d", status)
	}
	if v := b.read(12); string(v) != "RFB 003.008\n" {
		t.Fatalf("server version %q", v)
	}
	b.send([]byte("RFB 003.008\n")...)
	if types := b.read(2); !bytes.Equal(types, []byte{1, 1}) {
		t.Fatalf("security types %v, want only None: the gateway logs in to Proxmox itself", types)
	}
	b.send(1)
	if result := b.read(4); !bytes.Equal(result, []byte{0, 0, 0, 0}) {
		t.Fatalf("security result %v", result)
	}
	b.send(1) // ClientInit, shared
	init := b.read(24)
	name := b.read(int(binary.BigEndian.Uint32(init[20:])))
	if w, h := binary.BigEndian.Uint16(init[0:]), binary.BigEndian.Uint16(init[2:]); w != 640 || h != 480 || !strings.Contains(string(name), "VM 100") {
		t.Errorf("ServerInit %dx%d %q", w, h, name)
	}
	b.send(3, 0, 0, 0, 0, 0, 2, 128, 1, 224) // FramebufferUpdateRequest
	if hdr := b.read(16); hdr[0] != 0 || binary.BigEndian.Uint16(hdr[2:]) != 1 {
		t.Fatalf("FramebufferUpdate header %v", hdr)
	}
	b.read(16 * 16 * 4)
	b.send(append([]byte{6, 0, 0, 0, 0, 0, 0, 5}, "hello"...)...) // ClientCutText
	if echo := b.read(13); echo[0] != 3 || string(echo[8:]) != "hello" {
		t.Errorf("ServerCutText %q, want the clipboard echoed", echo)
	}

	if status, page := s.embedPage(s.api + embed); status != http.StatusGone || !strings.Contains(page, "session has ended") {
		t.Errorf("embed page of a spent session: %d, want 410 and a page that says it ended", status)
	}
	if _, status := s.dialConsole(socket); status != http.StatusForbidden {
		t.Errorf("second use of the session: %d, want 403", status)
	}
}

func TestConsoleRefusesAnExpiredSession(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	svc := s.services["web-1"]
	job, _, err := s.jobs.Insert(context.Background(), jobs.PowerArgs{ServiceID: svc.ID, Action: "start"},
		jobs.Request{TeamID: svc.TeamID, ServiceID: svc.ID, RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.q.CreateConsoleSession(context.Background(), queries.CreateConsoleSessionParams{
		TokenHash: jobs.ConsoleTokenHash("expired-token"), TeamID: svc.TeamID, ServiceID: svc.ID,
		JobID: job.ID, ExpiresAt: time.Now().Add(-time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, status := s.dialConsole("/api/console/expired-token"); status != http.StatusForbidden {
		t.Errorf("expired session: %d, want 403", status)
	}
	if _, status := s.dialConsole("/api/console/never-issued"); status != http.StatusForbidden {
		t.Errorf("unknown session: %d, want 403", status)
	}
}

func TestConsoleOfAStoppedVMIsRefused(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	status, resp := s.do("POST", "/api/services/"+s.services["db-1"].ID.String()+"/console", "")
	if status != http.StatusAccepted {
		t.Fatalf("console: %d %v", status, resp)
	}
	job := s.waitJob(resp["job"].(map[string]any)["id"].(string), 20*time.Second)
	if job["status"] != "failed" || !strings.Contains(job["error"].(string), "not running") {
		t.Errorf("console of a stopped VM: %v %v", job["status"], job["error"])
	}
}

// embedPage loads a console page as an iframe does, without a key.
func (s *system) embedPage(url string) (int, string) {
	s.t.Helper()
	res, err := s.client.Get(url)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	page, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(page)
}

func TestAPlatformKeyDoesNotTakeATeamsConsoleSecrets(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	id := s.startJob("POST", "/api/services/"+s.services["web-1"].ID.String()+"/console", "")
	var job map[string]any
	jobtest.Eventually(t, 30*time.Second, "the console job to end", func() bool {
		_, resp := s.doWith(s.platformKey, "GET", "/api/jobs/"+id, "")
		job, _ = resp["job"].(map[string]any)
		return job["status"] == "succeeded"
	})
	if job["secrets"] != nil {
		t.Errorf("the platform key was shown the team's console secrets: %v", job["secrets"])
	}
	if job := s.job(id); job["secrets"] == nil {
		t.Error("the team did not get its console secrets after a platform key read the job")
	}
}

// TestARevokedGranteesVNCConsoleIsCut: a person given the console of a
// VPS opens it; the team's own console secrets are not theirs to take;
// once the grant is revoked the open console is cut.
func TestARevokedGranteesVNCConsoleIsCut(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOpts{})
	id := s.services["web-1"].ID.String()
	svc := "/api/services/" + id
	friend, grant := s.grantee("vnc-friend@example.test", id, `["view","console"]`)

	// The team's own console job: its one-time URLs are the team's.
	own := s.startJob("POST", svc+"/console", "")
	s.waitJobWith(friend, own)
	if job := s.waitJob(own, 30*time.Second); job["secrets"] == nil {
		t.Errorf("the team's console URLs went to the grantee who looked first: %v", job)
	}

	status, resp := s.doWith(friend, "POST", svc+"/console", "")
	if status != http.StatusAccepted {
		t.Fatalf("grantee's console: %d %v", status, resp)
	}
	job := s.waitJobWith(friend, resp["job"].(map[string]any)["id"].(string))
	secrets, _ := job["secrets"].(map[string]any)
	socket, _ := secrets["url"].(string)
	b, code := s.dialConsole(socket)
	if b == nil {
		t.Fatalf("gateway refused the grantee's session: %d", code)
	}
	// The RFB handshake, as a browser's noVNC does it.
	b.read(12)
	b.send([]byte("RFB 003.008\n")...)
	b.read(2)
	b.send(1)
	b.read(4)
	b.send(1)
	init := b.read(24)
	b.read(int(binary.BigEndian.Uint32(init[20:])))
	if status, resp := s.do("DELETE", "/api/permissions/"+grant, ""); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, resp)
	}
	b.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := b.conn.ReadMessage(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the grantee's console went on after the grant was revoked")
			}
			return // cut
		}
	}
}

// waitJobWith waits, reading with key, until the job has ended.
func (s *system) waitJobWith(key, id string) map[string]any {
	s.t.Helper()
	var job map[string]any
	jobtest.Eventually(s.t, 30*time.Second, "job "+id+" to end", func() bool {
		status, resp := s.doWith(key, "GET", "/api/jobs/"+id, "")
		if status != http.StatusOK {
			s.t.Fatalf("GET job as %s: %d %v", key[:11], status, resp)
		}
		job = resp["job"].(map[string]any)
		return job["status"] == "succeeded" || job["status"] == "failed" || job["status"] == "cancelled"
	})
	return job
}
