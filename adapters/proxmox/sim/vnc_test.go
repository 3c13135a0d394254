package sim_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/proxmox/sim"
)

// vncSim serves a simulator with ticket login and returns a go-proxmox
// client logged in with a ticket, the session and the base URL.
func vncSim(t *testing.T) (*sim.Server, *pve.Client, pve.Session, string) {
	t.Helper()
	s := sim.New(sim.Config{TokenID: tokenID, TokenSecret: tokenSecret, TaskDuration: taskTime, Password: "pw",
		VNCConnectTimeout: 300 * time.Millisecond})
	for _, vm := range sim.DemoVMs() {
		s.AddVM(vm)
	}
	base := httpServer(t, s)
	sess := login(t, base, "root@pam", "pw")
	c := pve.NewClient(base+"/api2/json", pve.WithSession(sess.Ticket, sess.CSRFPreventionToken),
		pve.WithHTTPClient(&http.Client{Timeout: 2 * time.Second}))
	return s, c, sess, base
}

func dialVNC(base string, vnc *pve.VNC, vmid int, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	u := strings.Replace(base, "http://", "ws://", 1) + fmt.Sprintf("/api2/json/nodes/pve1/qemu/%d/vncwebsocket?port=%d&vncticket=%s",
		vmid, vnc.Port, url.QueryEscape(vnc.Ticket))
	d := websocket.Dialer{Subprotocols: []string{"binary"}, HandshakeTimeout: 2 * time.Second}
	return d.Dial(u, hdr)
}

// stream reads a websocket's binary frames as one byte stream, the way a
// relay sees them.
type stream struct {
	conn *websocket.Conn
	buf  bytes.Buffer
}

func (s *stream) Read(p []byte) (int, error) {
	for s.buf.Len() == 0 {
		s.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		typ, msg, err := s.conn.ReadMessage()
		if err != nil {
			return 0, err
		}
		if typ != websocket.BinaryMessage {
			return 0, fmt.Errorf("frame type %d, want binary", typ)
		}
		s.buf.Write(msg)
	}
	return s.buf.Read(p)
}

func (s *stream) send(p []byte) error { return s.conn.WriteMessage(websocket.BinaryMessage, p) }

func TestVNCConsoleOverWebsocket(t *testing.T) {
	_, c, sess, base := vncSim(t)
	ctx := context.Background()
	vm := getVM(t, c, "pve1", 100)
	vnc, err := vm.VNCProxy(ctx, &pve.VNCConfig{Websocket: true, GeneratePassword: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(vnc.Ticket, "PVEVNC:") || vnc.Port < 5900 || len(vnc.Password) != 8 || vnc.User != "root@pam" || vnc.Cert == "" {
		t.Fatalf("vncproxy = %+v", vnc)
	}
	task := pve.NewTask(pve.UPID(vnc.UPID), c)
	if err := task.Ping(ctx); err != nil || !task.IsRunning || task.Type != "vncproxy" {
		t.Fatalf("vncproxy task %+v %v", task, err)
	}

	hdr := http.Header{"Cookie": {"PVEAuthCookie=" + sess.Ticket}}
	conn, res, err := dialVNC(base, vnc, 100, hdr)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, res)
	}
	if conn.Subprotocol() != "binary" {
		t.Errorf("subprotocol %q", conn.Subprotocol())
	}
	rfb := &stream{conn: conn}
	ver := make([]byte, 12)
	if _, err := io.ReadFull(rfb, ver); err != nil || string(ver) != "RFB 003.008\n" {
		t.Fatalf("greeting %q %v", ver, err)
	}
	rfb.send([]byte("RFB 003.008\n"))
	types := make([]byte, 2)
	if _, err := io.ReadFull(rfb, types); err != nil || !bytes.Equal(types, []byte{1, 2}) {
		t.Fatalf("security types %v %v", types, err)
	}
	rfb.send([]byte{2})
	challenge := make([]byte, 16)
	io.ReadFull(rfb, challenge)
	rfb.send(sim.VNCAuthResponse(vnc.Password, challenge))
	result := make([]byte, 4)
	if _, err := io.ReadFull(rfb, result); err != nil || binary.BigEndian.Uint32(result) != 0 {
		t.Fatalf("security result %v %v", result, err)
	}
	rfb.send([]byte{1}) // ClientInit, shared
	init := make([]byte, 24)
	io.ReadFull(rfb, init)
	if w, h := binary.BigEndian.Uint16(init[0:]), binary.BigEndian.Uint16(init[2:]); w != 640 || h != 480 {
		t.Errorf("framebuffer %dx%d", w, h)
	}
	name := make([]byte, binary.BigEndian.Uint32(init[20:]))
	io.ReadFull(rfb, name)
	if string(name) != "VM 100 (web-1)" {
		t.Errorf("desktop name %q", name)
	}

	// ClientCutText comes back as ServerCutText; an update request gets a
	// 16x16 raw rectangle.
	cut := append([]byte{6, 0, 0, 0, 0, 0, 0, 5}, "hello"...)
	rfb.send(cut)
	echo := make([]byte, 13)
	if _, err := io.ReadFull(rfb, echo); err != nil || echo[0] != 3 || string(echo[8:]) != "hello" {
		t.Errorf("cut text echo %q %v", echo, err)
	}
	rfb.send([]byte{3, 0, 0, 0, 0, 0, 2, 128, 1, 224})
	update := make([]byte, 4+12+16*16*4)
	if _, err := io.ReadFull(rfb, update); err != nil || update[0] != 0 || binary.BigEndian.Uint16(update[2:]) != 1 {
		t.Errorf("framebuffer update %v %v", update[:16], err)
	}
	conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	conn.Close()
	if got := waitTask(t, c, pve.UPID(vnc.UPID)); !got.IsSuccessful {
		t.Errorf("vncproxy task ended %q", got.ExitStatus)
	}
}

func TestVNCRefusals(t *testing.T) {
	_, c, sess, base := vncSim(t)
	ctx := context.Background()
	vm := getVM(t, c, "pve1", 100)
	cookie := http.Header{"Cookie": {"PVEAuthCookie=" + sess.Ticket}}

	// A wrong VNC password fails authentication (the ticket is the
	// password when none was generated).
	vnc, err := vm.VNCProxy(ctx, &pve.VNCConfig{Websocket: true})
	if err != nil || vnc.Password != "" {
		t.Fatalf("vncproxy %+v %v", vnc, err)
	}
	conn, _, err := dialVNC(base, vnc, 100, cookie)
	if err != nil {
		t.Fatal(err)
	}
	rfb := &stream{conn: conn}
	io.ReadFull(rfb, make([]byte, 12))
	rfb.send([]byte("RFB 003.008\n"))
	io.ReadFull(rfb, make([]byte, 2))
	rfb.send([]byte{2})
	challenge := make([]byte, 16)
	io.ReadFull(rfb, challenge)
	rfb.send(sim.VNCAuthResponse("wrong", challenge))
	result := make([]byte, 8)
	io.ReadFull(rfb, result)
	reason := make([]byte, binary.BigEndian.Uint32(result[4:]))
	io.ReadFull(rfb, reason)
	if binary.BigEndian.Uint32(result) != 1 || string(reason) != "Authentication failure" {
		t.Errorf("wrong password: %v %q", result, reason)
	}
	conn.Close()

	// The ticket is checked before the upgrade.
	bad := *vnc
	bad.Ticket = "PVEVNC:00000000::AAAA"
	if _, res, err := dialVNC(base, &bad, 100, cookie); err == nil || res == nil || res.Status != "500 permission denied - invalid PVEVNC ticket" {
		t.Errorf("bad ticket: %v %v", res, err)
	}
	// A ticket for another VM is refused too.
	other, err := getVM(t, c, "pve2", 102).VNCProxy(ctx, &pve.VNCConfig{Websocket: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := dialVNC(base, other, 100, cookie); err == nil || res.StatusCode != 500 {
		t.Errorf("ticket of VM 102 on VM 100: %v %v", res, err)
	}
	// An API token is upgraded and then closed without a byte.
	vnc, _ = vm.VNCProxy(ctx, &pve.VNCConfig{Websocket: true})
	tokenClient := pve.NewClient(base+"/api2/json", pve.WithAPIToken(tokenID, tokenSecret))
	tvm, _ := (&pve.Node{}).New(tokenClient, "pve1").VirtualMachine(ctx, 100)
	tvnc, err := tvm.VNCProxy(ctx, &pve.VNCConfig{Websocket: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err = dialVNC(base, tvnc, 100, http.Header{"Authorization": {"PVEAPIToken=" + tokenID + "=" + tokenSecret}})
	if err != nil {
		t.Fatalf("token dial: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := conn.ReadMessage(); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("token session read: %v, want the connection closed", err)
	}
	conn.Close()
	// No websocket within the connect timeout: the session's task fails.
	if got := waitTask(t, c, pve.UPID(vnc.UPID)); got.ExitStatus != "connection timed out" {
		t.Errorf("unused session ended %q", got.ExitStatus)
	}
	// A stopped VM's session fails at once.
	stopped, err := getVM(t, c, "pve1", 101).VNCProxy(ctx, &pve.VNCConfig{Websocket: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitTask(t, c, pve.UPID(stopped.UPID)); got.ExitStatus != "VM 101 not running" {
		t.Errorf("session of a stopped VM ended %q", got.ExitStatus)
	}
}
