package webhook

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"code.dny.dev/ssrf"
)

// resolveTimeout bounds CheckURL's lookup: a customer is waiting for a form
// to save.
const resolveTimeout = 3 * time.Second

// notHTTPS is CheckURL's reason for every URL that is not plain https.
const notHTTPS = "must be an https:// URL without credentials"

// special refuses every special-purpose address of IANA's registries
// (loopback, private, link-local, CGNAT, documentation, benchmarking,
// multicast, reserved, ...) and every IPv6 address outside global unicast,
// so that no IPv6 spelling of an IPv4 address (IPv4-compatible, mapped,
// NAT64, 6to4, Teredo) gets through. Ports and networks are not its
// concern here.
var special = ssrf.New(ssrf.WithAnyNetwork(), ssrf.WithAnyPort())

// Guard decides which addresses webhooks may be sent to.
// The zero Guard refuses every internal address.
type Guard struct {
	// Allowed are networks that are allowed even though they are internal
	// (operators with an in-house receiver; tests with httptest on 127.0.0.1).
	Allowed []netip.Prefix
	// Resolver looks hosts up; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// CheckURL returns "" when raw is a URL webhooks may be sent to, else a
// reason fit for a validationErrors line, without the URL itself, e.g.
// "must be an https:// URL without credentials", "does not resolve",
// "resolves to 10.1.2.3, an internal address".
//
// The URL must be https, name a host and carry no credentials; plain http
// is accepted only when every address the host resolves to is in Allowed.
// Every address the host resolves to is checked, since a client may use
// any of them.
func (g *Guard) CheckURL(ctx context.Context, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a valid URL"
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return notHTTPS
	}
	host := u.Hostname()
	if host == "" {
		return "must name a host"
	}
	if _, err := netip.ParseAddr(host); err != nil && legacyIPv4(host) {
		// Resolvers that follow inet_aton read 2130706433, 0x7f.1 or 0177.0.0.1
		// as 127.0.0.1: no such spelling is a host name.
		return "must name a host or a dotted IPv4 address, not an address in another spelling"
	}
	addrs, err := g.lookup(ctx, host)
	if u.Scheme == "http" {
		// Plain http is for in-house receivers only: a token sent in the
		// clear must not cross the internet.
		if err != nil {
			return notHTTPS
		}
		for _, a := range addrs {
			if !g.allowed(a) {
				return notHTTPS
			}
		}
		return ""
	}
	if err != nil {
		return "does not resolve"
	}
	for _, a := range addrs {
		if g.Internal(a) {
			return "resolves to " + a.WithZone("").Unmap().String() + ", an internal address"
		}
	}
	return ""
}

// Internal reports whether a is an address the fleet never calls out to:
// any special-purpose address (see special), unless it is in g.Allowed (an
// IPv4-mapped address counts as its IPv4 address there). An invalid
// address is internal.
func (g *Guard) Internal(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	if g.allowed(a) {
		return false
	}
	return special.SafeAddr(a) != nil
}

// allowed reports whether a is in one of g.Allowed.
func (g *Guard) allowed(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	for _, p := range g.Allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// lookup returns the addresses host stands for; an IP literal stands for
// itself.
func (g *Guard) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	r := g.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	return addrs, err
}

// legacyIPv4 reports whether host is an IPv4 address in one of the forms
// inet_aton accepts: one to four dot-separated parts, each decimal, octal
// (leading 0) or hex (0x), the last filling the bytes left (127.1,
// 2130706433, 0x7f000001).
func legacyIPv4(host string) bool {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return false
	}
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		if digits == "" && base != 16 {
			return false
		}
		n, err := strconv.ParseUint(cmp.Or(digits, "0"), base, 32)
		if err != nil {
			return false
		}
		// The last part fills the bytes the others left; the others are a
		// byte each.
		if bits := 8 * (4 - i); i < len(parts)-1 && n > 0xff || i == len(parts)-1 && bits < 32 && n >= 1<<bits {
			return false
		}
	}
	return true
}
