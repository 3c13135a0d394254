package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"time"
)

// resolveTimeout bounds CheckURL's lookup: a customer is waiting for a form
// to save.
const resolveTimeout = 3 * time.Second

// notHTTPS is CheckURL's reason for every URL that is not plain https.
const notHTTPS = "must be an https:// URL without credentials"

// internalNets are special-purpose networks that netip.Addr's predicates
// do not cover.
var internalNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network": Linux connects 0.x to the host itself
	netip.MustParsePrefix("100.64.0.0/10"), // CGNAT, used inside clouds and by overlay networks
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking, often used for lab networks
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and the broadcast address
	netip.MustParsePrefix("fec0::/10"),     // deprecated site-local, still routed by some
}

// nat64 is the well-known NAT64 prefix. Its last 32 bits are the IPv4
// address a NAT64 gateway connects to, so they are checked like one.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

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

// Internal reports whether a is an address the fleet never calls out to
// (loopback, private, link-local unicast/multicast, unspecified, multicast,
// interface-local multicast, 100.64.0.0/10 CGNAT, 192.0.0.0/24, a few other
// reserved networks, and IPv4-mapped and NAT64 forms of these) unless it is
// in g.Allowed. An invalid address is internal.
func (g *Guard) Internal(a netip.Addr) bool {
	a = a.WithZone("").Unmap() // Prefix.Contains never matches a zoned or mapped address
	if !a.IsValid() {
		return true
	}
	if g.allowed(a) {
		return false
	}
	if nat64.Contains(a) {
		b := a.As16()
		return g.Internal(netip.AddrFrom4([4]byte(b[12:])))
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() {
		return true
	}
	for _, p := range internalNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
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
