package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sign returns the signature header value for body sent at ts:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<unix seconds>." + body)>".
// The timestamp is signed with the body so that receivers can reject
// replays of an old delivery.
func Sign(key []byte, ts time.Time, body []byte) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + t + ",v1=" + hex.EncodeToString(mac(key, t, body))
}

// Verify checks a signature header against body with key, accepting
// timestamps within tolerance of now; it returns an error saying what is
// wrong. Several v1 values may be given (as while a key is rotated); one
// matching is enough.
func Verify(key []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var t string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			t = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return errors.New("webhook: signature has no valid timestamp")
	}
	if len(sigs) == 0 {
		return errors.New("webhook: signature has no v1 value")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: signature timestamp is %v from now, more than the %v allowed", d.Truncate(time.Second), tolerance)
	}
	want := mac(key, t, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return errors.New("webhook: signature does not match the body")
}

// mac is HMAC-SHA256(key, t + "." + body), t as it appears in the header.
func mac(key []byte, t string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(t))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
