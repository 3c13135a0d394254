package web

import (
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"

	"github.com/gorilla/websocket"
)

// RFB (VNC) security types.
const (
	rfbSecurityNone    = 1
	rfbSecurityVNCAuth = 2
)

// rfbLogin does the client side of an RFB 3.8 handshake up to the end of
// security, answering VNC authentication with password. The session goes on
// with ClientInit, which the relay passes through from the browser.
func rfbLogin(rw io.ReadWriter, password string) error {
	version := make([]byte, 12)
	if _, err := io.ReadFull(rw, version); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	if string(version[:4]) != "RFB " {
		return fmt.Errorf("not an RFB server: %q", version)
	}
	if _, err := rw.Write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	var n [1]byte
	if _, err := io.ReadFull(rw, n[:]); err != nil {
		return err
	}
	if n[0] == 0 {
		return rfbReason(rw)
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(rw, types); err != nil {
		return err
	}
	switch {
	case slices.Contains(types, rfbSecurityVNCAuth):
		if _, err := rw.Write([]byte{rfbSecurityVNCAuth}); err != nil {
			return err
		}
		challenge := make([]byte, 16)
		if _, err := io.ReadFull(rw, challenge); err != nil {
			return err
		}
		if _, err := rw.Write(vncAuthResponse(password, challenge)); err != nil {
			return err
		}
	case slices.Contains(types, rfbSecurityNone):
		if _, err := rw.Write([]byte{rfbSecurityNone}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("the VNC server offers no security type we speak: %v", types)
	}
	var result [4]byte
	if _, err := io.ReadFull(rw, result[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(result[:]) != 0 {
		return rfbReason(rw)
	}
	return nil
}

// rfbServeNone does the server side of an RFB handshake up to the end of
// security, offering no authentication: the browser has proved itself with
// its one-time token, and the provider's password stays here.
func rfbServeNone(rw io.ReadWriter) error {
	if _, err := rw.Write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	version := make([]byte, 12)
	if _, err := io.ReadFull(rw, version); err != nil {
		return fmt.Errorf("read client version: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(string(version), "RFB %03d.%03d\n", &major, &minor); err != nil || major != 3 {
		return fmt.Errorf("unsupported RFB version %q", version)
	}
	if minor < 7 {
		// 3.3: the server names the security type; no result follows None.
		_, err := rw.Write([]byte{0, 0, 0, rfbSecurityNone})
		return err
	}
	if _, err := rw.Write([]byte{1, rfbSecurityNone}); err != nil {
		return err
	}
	var choice [1]byte
	if _, err := io.ReadFull(rw, choice[:]); err != nil {
		return err
	}
	if choice[0] != rfbSecurityNone {
		return fmt.Errorf("client chose security type %d", choice[0])
	}
	if minor == 7 {
		return nil // 3.7 sends no result for None
	}
	_, err := rw.Write([]byte{0, 0, 0, 0})
	return err
}

func rfbReason(r io.Reader) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return errors.New("the VNC server refused the connection")
	}
	reason := make([]byte, min(binary.BigEndian.Uint32(n[:]), 1024))
	io.ReadFull(r, reason)
	return fmt.Errorf("the VNC server refused the connection: %s", reason)
}

// vncAuthResponse answers a VNC authentication challenge: DES with the
// password's first 8 bytes, each bit-reversed, as key.
func vncAuthResponse(password string, challenge []byte) []byte {
	key := make([]byte, 8)
	copy(key, password)
	for i, b := range key {
		key[i] = bits.Reverse8(b)
	}
	block, _ := des.NewCipher(key) // 8 bytes: cannot fail
	out := make([]byte, 16)
	block.Encrypt(out[:8], challenge[:8])
	block.Encrypt(out[8:], challenge[8:16])
	return out
}

// wsStream reads and writes a websocket's binary messages as one byte
// stream. Reads come from one goroutine and writes from another at most.
type wsStream struct {
	conn *websocket.Conn
	r    io.Reader
	wmu  sync.Mutex
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			typ, r, err := s.conn.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage && typ != websocket.TextMessage {
				continue
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if err == io.EOF {
			s.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (s *wsStream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.conn.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
