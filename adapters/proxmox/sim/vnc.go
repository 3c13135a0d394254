package sim

import (
	"bytes"
	"crypto/des"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// vncTicketLife bounds a PVEVNC ticket: PVE accepts it from 20 seconds
// before to 40 seconds after it was made.
const vncTicketLife = 40 * time.Second

// vncSession is one vncproxy: a port that waits for one websocket, and a
// vncproxy task that runs while the session lives.
type vncSession struct {
	node     string
	vmid     int
	port     int
	user     string
	password string // the VNC password: the generated one, else the ticket
	task     *task
	timer    *time.Timer
	used     bool

	mu   sync.Mutex
	conn *websocket.Conn
}

func (v *vncSession) close() {
	if v.timer != nil {
		v.timer.Stop()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.conn != nil {
		v.conn.Close()
	}
}

// simCert is the node certificate vncproxy hands out (a placeholder: no
// client verifies it against the websocket, which is plain HTTP here).
const simCert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUU0lNVUxBVEVEUFZFTk9ERUNFUlRJRklDQVRFMAoGCCqGSM49\nBAMCMBkxFzAVBgNVBAMMDnB2ZS1zaW11bGF0b3IwHhcNMjQwMTAxMDAwMDAwWhcN\nMzQwMTAxMDAwMDAwWjAZMRcwFQYDVQQDDA5wdmUtc2ltdWxhdG9yMFkwEwYHKoZI\n-----END CERTIFICATE-----\n"

// vncProxy is POST /qemu/{vmid}/vncproxy: it opens a session on a new
// port and answers the user, a PVEVNC ticket, the certificate, the port
// (a string, as PVE sends it) and the vncproxy task's UPID, plus an
// 8-character password when generate-password is set. The session waits
// Config.VNCConnectTimeout for its websocket, then its task fails.
func (s *Server) vncProxy(r *http.Request, c *call) (any, error) {
	p, err := params(r)
	if err != nil {
		return nil, err
	}
	if err := checkParams(p, []string{"websocket", "generate-password", "width", "height"}, "width", "height"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.vm(c)
	if err != nil {
		return nil, err
	}
	port := s.nextPort
	for s.vnc[port] != nil {
		port++
	}
	s.nextPort = port + 1
	if s.nextPort > 5999 {
		s.nextPort = 5900
	}
	now := time.Now()
	ticket := s.makeTicket("PVEVNC", c.user, fmt.Sprintf("/vms/%d", c.vmid), now)
	sess := &vncSession{node: c.node, vmid: c.vmid, port: port, user: c.user, password: ticket}
	res := map[string]any{"user": c.user, "ticket": ticket, "cert": simCert, "port": strconv.Itoa(port)}
	if isTrue(p["generate-password"]) {
		b := make([]byte, 8)
		rand.Read(b)
		const letters = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
		for i := range b {
			b[i] = letters[int(b[i])%len(letters)]
		}
		sess.password = string(b)
		res["password"] = sess.password
	}
	exit := c.taskError
	sess.task = s.callTask(c, taskSpec{node: c.node, typ: "vncproxy", id: strconv.Itoa(c.vmid), manual: true,
		log: []string{fmt.Sprintf("starting vnc proxy UPID for VM %d on port %d", c.vmid, port)},
		onEnd: func(string) {
			if s.vnc[port] == sess {
				delete(s.vnc, port)
			}
		}})
	res["upid"] = sess.task.upid
	s.vnc[port] = sess
	if exit != "" {
		s.finish(sess.task, exit)
		return res, nil
	}
	if st.Status != "running" {
		// qm vncproxy fails at once on a VM that does not run.
		s.finish(sess.task, fmt.Sprintf("VM %d not running", c.vmid))
		return res, nil
	}
	if !s.closed {
		sess.timer = time.AfterFunc(s.cfg.VNCConnectTimeout, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !sess.used {
				s.finish(sess.task, "connection timed out")
			}
		})
	}
	return res, nil
}

var upgrader = websocket.Upgrader{
	Subprotocols:    []string{"binary"},
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
}

// vncWebsocket is GET /qemu/{vmid}/vncwebsocket?port=&vncticket=: it checks
// the ticket (PVE checks it against the user and /vms/{vmid}), upgrades to
// a websocket of binary frames and relays it to the session's VNC server,
// which here is a small RFB 3.8 server. As in PVE, a session authenticated
// with an API token is upgraded and then closed without a byte (go-proxmox
// documents this as "unexpected EOF"); use a PVEAuthCookie ticket. A port
// with no waiting session is closed the same way, as pveproxy cannot
// connect to it.
func (s *Server) vncWebsocket(w http.ResponseWriter, r *http.Request) {
	c := &call{node: r.PathValue("node")}
	idx := s.Begin(r, "vncwebsocket", "")
	f, status := s.admit(w, r, "vncwebsocket", idx, c)
	if status != 0 || f == nil {
		s.Finish(idx, status)
		return
	}
	q := r.URL.Query()
	fail := func(err error) { s.Finish(idx, writeError(w, err)) }
	for _, k := range []string{"port", "vncticket"} {
		if q.Get(k) == "" {
			fail(paramError(k, "property is missing and it is not optional"))
			return
		}
	}
	port, err := strconv.Atoi(q.Get("port"))
	if err != nil || port < 5900 || port > 5999 {
		fail(paramError("port", "value must have a maximum value of 5999"))
		return
	}
	s.mu.Lock()
	st, err := s.vm(c)
	if err != nil {
		s.mu.Unlock()
		fail(err)
		return
	}
	if _, ok := s.checkTicket("PVEVNC", q.Get("vncticket"), c.user, fmt.Sprintf("/vms/%d", c.vmid), -20*time.Second, vncTicketLife); !ok {
		s.mu.Unlock()
		fail(serverError("permission denied - invalid PVEVNC ticket"))
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.mu.Unlock()
		fail(&apiError{Status: http.StatusBadRequest, Reason: "websocket upgrade required"})
		return
	}
	sess := s.vnc[port]
	usable := sess != nil && !sess.used && sess.vmid == c.vmid && sess.node == c.node && sess.task.end.IsZero()
	token := strings.Contains(c.user, "!")
	if usable {
		sess.used = true
		if sess.timer != nil {
			sess.timer.Stop()
		}
	}
	name := st.Name
	s.mu.Unlock()

	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.Finish(idx, http.StatusBadRequest)
		return
	}
	s.Finish(idx, http.StatusSwitchingProtocols)
	if !usable || token {
		conn.Close()
		if usable {
			s.mu.Lock()
			s.finish(sess.task, "failed waiting for client: timed out")
			s.mu.Unlock()
		}
		return
	}
	sess.mu.Lock()
	sess.conn = conn
	sess.mu.Unlock()
	rfbErr := serveRFB(&wsStream{conn: conn}, sess.password, fmt.Sprintf("VM %d (%s)", c.vmid, name))
	conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !errors.Is(rfbErr, io.EOF) && !websocket.IsCloseError(rfbErr, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
		sess.task.log = append(sess.task.log, "vnc session ended: "+rfbErr.Error())
	}
	s.finish(sess.task, "")
}

// wsStream reads and writes a websocket's binary frames as one stream.
type wsStream struct {
	conn *websocket.Conn
	r    io.Reader
}

func (w *wsStream) Read(p []byte) (int, error) {
	for {
		if w.r != nil {
			n, err := w.r.Read(p)
			if n > 0 || !errors.Is(err, io.EOF) {
				return n, err
			}
		}
		typ, r, err := w.conn.NextReader()
		if err != nil {
			return 0, err
		}
		if typ == websocket.BinaryMessage || typ == websocket.TextMessage {
			w.r = r
		}
	}
}

func (w *wsStream) Write(p []byte) (int, error) {
	if err := w.conn.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// VNC (RFB) security types and client messages.
const (
	rfbSecNone    = 1
	rfbSecVNCAuth = 2

	rfbSetPixelFormat  = 0
	rfbSetEncodings    = 2
	rfbUpdateRequest   = 3
	rfbKeyEvent        = 4
	rfbPointerEvent    = 5
	rfbClientCutText   = 6
	rfbFramebufferW    = 640
	rfbFramebufferH    = 480
	rfbUpdateRectangle = 16
)

// serveRFB speaks enough RFB for a relay to be tested end to end: the
// version handshake (3.3, 3.7 or 3.8), VNC authentication with password
// (as QEMU does when PVE sets the ticket or the generated password),
// ServerInit for a 640x480 true-colour screen, a 16x16 raw rectangle for
// each FramebufferUpdateRequest, and ClientCutText echoed back as
// ServerCutText.
func serveRFB(rw io.ReadWriter, password, name string) error {
	if _, err := rw.Write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	ver := make([]byte, 12)
	if _, err := io.ReadFull(rw, ver); err != nil {
		return err
	}
	minor := 0
	switch string(ver) {
	case "RFB 003.003\n":
		minor = 3
	case "RFB 003.007\n":
		minor = 7
	case "RFB 003.008\n":
		minor = 8
	default:
		return fmt.Errorf("unsupported RFB version %q", ver)
	}
	if minor == 3 {
		if err := binary.Write(rw, binary.BigEndian, uint32(rfbSecVNCAuth)); err != nil {
			return err
		}
	} else {
		if _, err := rw.Write([]byte{1, rfbSecVNCAuth}); err != nil {
			return err
		}
		choice := make([]byte, 1)
		if _, err := io.ReadFull(rw, choice); err != nil {
			return err
		}
		if choice[0] != rfbSecVNCAuth {
			return rfbFail(rw, minor, "Unsupported security type")
		}
	}
	challenge := make([]byte, 16)
	rand.Read(challenge)
	if _, err := rw.Write(challenge); err != nil {
		return err
	}
	response := make([]byte, 16)
	if _, err := io.ReadFull(rw, response); err != nil {
		return err
	}
	if !bytes.Equal(response, VNCAuthResponse(password, challenge)) {
		return rfbFail(rw, minor, "Authentication failure")
	}
	if err := binary.Write(rw, binary.BigEndian, uint32(0)); err != nil {
		return err
	}
	shared := make([]byte, 1)
	if _, err := io.ReadFull(rw, shared); err != nil {
		return err
	}
	var init bytes.Buffer
	binary.Write(&init, binary.BigEndian, uint16(rfbFramebufferW))
	binary.Write(&init, binary.BigEndian, uint16(rfbFramebufferH))
	// 32 bits per pixel, depth 24, little endian, true colour, 8 bits each
	// of red, green and blue at shifts 16, 8 and 0.
	init.Write([]byte{32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0})
	binary.Write(&init, binary.BigEndian, uint32(len(name)))
	init.WriteString(name)
	if _, err := rw.Write(init.Bytes()); err != nil {
		return err
	}
	for {
		typ := make([]byte, 1)
		if _, err := io.ReadFull(rw, typ); err != nil {
			return err
		}
		var skip int
		switch typ[0] {
		case rfbSetPixelFormat:
			skip = 19
		case rfbSetEncodings:
			hdr := make([]byte, 3)
			if _, err := io.ReadFull(rw, hdr); err != nil {
				return err
			}
			skip = 4 * int(binary.BigEndian.Uint16(hdr[1:]))
		case rfbUpdateRequest:
			if _, err := io.ReadFull(rw, make([]byte, 9)); err != nil {
				return err
			}
			var upd bytes.Buffer
			upd.Write([]byte{0, 0})
			binary.Write(&upd, binary.BigEndian, uint16(1))
			for _, v := range []uint16{0, 0, rfbUpdateRectangle, rfbUpdateRectangle} {
				binary.Write(&upd, binary.BigEndian, v)
			}
			binary.Write(&upd, binary.BigEndian, int32(0)) // raw encoding
			upd.Write(bytes.Repeat([]byte{0x40, 0x20, 0x10, 0}, rfbUpdateRectangle*rfbUpdateRectangle))
			if _, err := rw.Write(upd.Bytes()); err != nil {
				return err
			}
		case rfbKeyEvent:
			skip = 7
		case rfbPointerEvent:
			skip = 5
		case rfbClientCutText:
			hdr := make([]byte, 7)
			if _, err := io.ReadFull(rw, hdr); err != nil {
				return err
			}
			n := binary.BigEndian.Uint32(hdr[3:])
			if n > 1<<20 {
				return fmt.Errorf("cut text of %d bytes", n)
			}
			text := make([]byte, n)
			if _, err := io.ReadFull(rw, text); err != nil {
				return err
			}
			var echo bytes.Buffer
			echo.Write([]byte{3, 0, 0, 0})
			binary.Write(&echo, binary.BigEndian, n)
			echo.Write(text)
			if _, err := rw.Write(echo.Bytes()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown RFB client message %d", typ[0])
		}
		if skip > 0 {
			if _, err := io.ReadFull(rw, make([]byte, skip)); err != nil {
				return err
			}
		}
	}
}

func rfbFail(w io.Writer, minor int, reason string) error {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(1))
	if minor >= 8 {
		binary.Write(&b, binary.BigEndian, uint32(len(reason)))
		b.WriteString(reason)
	}
	w.Write(b.Bytes())
	return errors.New(reason)
}

// VNCAuthResponse is a VNC client's answer to a VNC authentication
// challenge: the challenge DES-encrypted with the password (its first 8
// bytes, each byte's bits reversed) as the key.
func VNCAuthResponse(password string, challenge []byte) []byte {
	key := make([]byte, 8)
	copy(key, password)
	for i, b := range key {
		var r byte
		for j := 0; j < 8; j++ {
			r |= ((b >> j) & 1) << (7 - j)
		}
		key[i] = r
	}
	block, _ := des.NewCipher(key)
	out := make([]byte, len(challenge))
	for i := 0; i+8 <= len(challenge); i += 8 {
		block.Encrypt(out[i:i+8], challenge[i:i+8])
	}
	return out
}
