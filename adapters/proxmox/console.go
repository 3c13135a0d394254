package proxmox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
	pve "github.com/luthermonson/go-proxmox"

	"github.com/hostfleet/provisiond/adapters/failure"
)

// ErrNoConsoleLogin is returned by console calls when the client has no
// user and password: PVE refuses API tokens on vncwebsocket.
var ErrNoConsoleLogin = errors.New("proxmox: consoles need a user and password (PROXMOX_CONSOLE_USER, PROXMOX_CONSOLE_PASSWORD)")

// Console is a VNC console Proxmox opened for a VM. Its ticket and the
// login cookie are secrets: they stay in the process that relays the
// console.
type Console struct {
	VM     VMRef
	Port   int
	Ticket string // the VNC ticket, also the VNC password
	cookie string // PVEAuthCookie of the login that opened it
}

// OpenConsole asks Proxmox for a websocket VNC console of the VM
// (vncproxy). It must be dialled within seconds: Proxmox waits only briefly
// for the connection.
func (c *Client) OpenConsole(ctx context.Context, ref VMRef) (Console, error) {
	if c.login == nil {
		return Console{}, &failure.Error{Class: failure.Permanent, Provider: Provider, Op: "vncproxy", Err: ErrNoConsoleLogin,
			Message: "the console is not set up on this server"}
	}
	// Logs in, or renews a ticket near its end; a live one is kept.
	err := c.call(ctx, "login", func(ctx context.Context) error {
		if err := c.login.CreateSession(ctx); err != nil && !errors.Is(err, pve.ErrSessionExists) {
			return err
		}
		return nil
	})
	if err != nil {
		return Console{}, err
	}
	var vnc pve.VNC
	err = c.call(ctx, "vncproxy", func(ctx context.Context) error {
		return c.login.Post(ctx, vmPath(ref, "vncproxy"), map[string]any{"websocket": 1}, &vnc)
	})
	if err != nil {
		return Console{}, err
	}
	sess := c.login.Session()
	if sess == nil || vnc.Ticket == "" || vnc.Port == 0 {
		return Console{}, &failure.Error{Class: failure.Transient, Provider: Provider, Op: "vncproxy",
			Message: "Proxmox answered without a console ticket"}
	}
	return Console{VM: ref, Port: int(vnc.Port), Ticket: vnc.Ticket, cookie: sess.Ticket}, nil
}

// DialConsole opens the console's websocket (vncwebsocket), which carries
// the raw RFB stream in binary messages.
func (c *Client) DialConsole(ctx context.Context, con Console) (*websocket.Conn, error) {
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = strings.TrimRight(u.Path, "/") + vmPath(con.VM, "vncwebsocket")
	u.RawQuery = url.Values{"port": {strconv.Itoa(con.Port)}, "vncticket": {con.Ticket}}.Encode()
	d := websocket.Dialer{Subprotocols: []string{"binary"}, HandshakeTimeout: c.timeout, TLSClientConfig: c.tls}
	h := http.Header{"Cookie": {"PVEAuthCookie=" + con.cookie}}
	var conn *websocket.Conn
	err = c.call(ctx, "vncwebsocket", func(ctx context.Context) error {
		var res *http.Response
		var derr error
		conn, res, derr = d.DialContext(ctx, u.String(), h)
		if derr != nil && res != nil {
			return &httpError{Status: res.StatusCode, Reason: strings.TrimSpace(strings.TrimPrefix(res.Status, strconv.Itoa(res.StatusCode)))}
		}
		if derr != nil {
			return fmt.Errorf("vncwebsocket: %w", derr)
		}
		return nil
	})
	return conn, err
}

// tlsConfig returns the TLS settings of a transport, for dialling
// websockets the same way.
func tlsConfig(rt http.RoundTripper) *tls.Config {
	if t, ok := rt.(*http.Transport); ok && t.TLSClientConfig != nil {
		return t.TLSClientConfig.Clone()
	}
	return nil
}
