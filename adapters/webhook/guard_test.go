package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostfleet/provisiond/adapters/webhook"
)

// offlineResolver answers from /etc/hosts only, so tests never wait on or
// depend on real DNS.
func offlineResolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no DNS in tests")
		},
	}
}

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

const legacyReason = "must name a host or a dotted IPv4 address, not an address in another spelling"

func TestCheckURL(t *testing.T) {
	loopback := prefixes("127.0.0.0/8", "::1/128")
	tests := []struct {
		name    string
		allowed []netip.Prefix
		url     string
		want    string // "" for accepted; "*" for any refusal
	}{
		{"http is refused", nil, "http://example.com/hook", "must be an https:// URL without credentials"},
		{"http to an address outside Allowed is refused", prefixes("10.0.0.0/8"), "http://127.0.0.1/hook", "must be an https:// URL without credentials"},
		{"userinfo is refused", nil, "https://user:pass@example.com/hook", "must be an https:// URL without credentials"},
		{"other schemes are refused", nil, "ftp://example.com/hook", "must be an https:// URL without credentials"},
		{"a URL without host is refused", nil, "https:///hook", "must name a host"},
		{"garbage is refused", nil, "https://exa mple.com/%zz", "is not a valid URL"},
		{"loopback IPv4 is refused", nil, "https://127.0.0.1/x", "resolves to 127.0.0.1, an internal address"},
		{"private IPv4 is refused", nil, "https://10.0.0.1", "resolves to 10.0.0.1, an internal address"},
		{"loopback IPv6 is refused", nil, "https://[::1]", "resolves to ::1, an internal address"},
		{"cloud metadata is refused", nil, "https://169.254.169.254/latest/meta-data", "resolves to 169.254.169.254, an internal address"},
		{"IPv4-mapped loopback is refused", nil, "https://[::ffff:127.0.0.1]/", "resolves to 127.0.0.1, an internal address"},
		{"CGNAT is refused", nil, "https://100.64.1.2/", "resolves to 100.64.1.2, an internal address"},
		{"unspecified is refused", nil, "https://0.0.0.0:8443/", "resolves to 0.0.0.0, an internal address"},
		{"localhost is refused", nil, "https://localhost:8443/", "*"},
		{"a decimal IPv4 spelling is refused", nil, "https://2130706433/", legacyReason},
		{"a hex IPv4 spelling is refused", nil, "https://0x7f000001/", legacyReason},
		{"an octal IPv4 spelling is refused", nil, "https://0177.0.0.1/", legacyReason},
		{"a short IPv4 spelling is refused", nil, "https://127.1/", legacyReason},
		{"a mixed short spelling is refused", nil, "https://0x7f.1/", legacyReason},
		{"a dotted spelling with a trailing dot is refused", nil, "https://127.0.0.1./", legacyReason},
		{"an IPv4-compatible IPv6 loopback is refused", nil, "https://[::127.0.0.1]/", "resolves to ::7f00:1, an internal address"},
		{"a 6to4 spelling of loopback is refused", nil, "https://[2002:7f00:1::]/", "resolves to 2002:7f00:1::, an internal address"},
		{"a NAT64 spelling of a public address is refused", nil, "https://[64:ff9b::808:808]/", "resolves to 64:ff9b::808:808, an internal address"},
		{"a name that does not resolve is refused", nil, "https://nonexistent.invalid/hook", "does not resolve"},
		{"a public address is accepted", nil, "https://93.184.215.14/hook?wait=false", ""},
		{"allowed https loopback is accepted", loopback, "https://127.0.0.1:8443/hook", ""},
		{"allowed https localhost is accepted", loopback, "https://localhost:8443/hook", ""},
		{"allowed http loopback is accepted", loopback, "http://127.0.0.1:8080/hook", ""},
		{"allowed http localhost is accepted", loopback, "http://localhost:8080/hook", ""},
		{"allowed networks do not open other internal ones", loopback, "https://10.0.0.1/", "resolves to 10.0.0.1, an internal address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &webhook.Guard{Allowed: tt.allowed, Resolver: offlineResolver()}
			got := g.CheckURL(context.Background(), tt.url)
			switch {
			case tt.want == "*" && got == "":
				t.Fatalf("CheckURL(%q) accepted, want refused", tt.url)
			case tt.want != "*" && got != tt.want:
				t.Fatalf("CheckURL(%q) = %q, want %q", tt.url, got, tt.want)
			}
			if strings.Contains(got, "/hook") || strings.Contains(got, "example.com") || strings.Contains(got, "pass") {
				t.Errorf("reason %q quotes the URL", got)
			}
		})
	}
}

func TestInternal(t *testing.T) {
	tests := []struct {
		addr    string
		allowed []netip.Prefix
		want    bool
	}{
		{"127.0.0.1", nil, true},
		{"10.1.2.3", nil, true},
		{"172.16.0.1", nil, true},
		{"192.168.1.1", nil, true},
		{"169.254.169.254", nil, true},
		{"100.64.0.1", nil, true},
		{"100.127.255.254", nil, true},
		{"192.0.0.8", nil, true},
		{"0.0.0.0", nil, true},
		{"224.0.0.1", nil, true},
		{"255.255.255.255", nil, true},
		{"::", nil, true},
		{"::1", nil, true},
		{"fe80::1%eth0", nil, true},
		{"fd00::1", nil, true},
		{"ff01::1", nil, true},
		{"ff02::1", nil, true},
		{"::ffff:10.0.0.1", nil, true},
		{"::ffff:169.254.169.254", nil, true},
		{"64:ff9b::a00:1", nil, true},                       // NAT64 form of 10.0.0.1
		{"64:ff9b::808:808", nil, true},                     // NAT64 form of 8.8.8.8: no IPv4 in IPv6 clothing
		{"::127.0.0.1", nil, true},                          // IPv4-compatible
		{"::ffff:8.8.8.8", nil, true},                       // IPv4-mapped
		{"2002:7f00:1::", nil, true},                        // 6to4 of 127.0.0.1
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", nil, true}, // Teredo
		{"fec0::1", nil, true},                              // deprecated site-local
		{"2001:db8::1", nil, true},                          // documentation
		{"192.0.2.1", nil, true},                            // TEST-NET-1
		{"198.51.100.7", nil, true},                         // TEST-NET-2
		{"203.0.113.9", nil, true},                          // TEST-NET-3
		{"198.18.0.1", nil, true},                           // benchmarking
		{"8.8.8.8", nil, false},
		{"100.128.0.1", nil, false},
		{"2606:4700::1111", nil, false},
		{"127.0.0.1", prefixes("127.0.0.0/8"), false},
		{"::ffff:127.0.0.1", prefixes("127.0.0.0/8"), false},
		{"10.0.0.1", prefixes("127.0.0.0/8"), true},
	}
	for _, tt := range tests {
		g := &webhook.Guard{Allowed: tt.allowed}
		if got := g.Internal(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Internal(%s) with Allowed %v = %v, want %v", tt.addr, tt.allowed, got, tt.want)
		}
	}
	if !(&webhook.Guard{}).Internal(netip.Addr{}) {
		t.Error("the zero Addr is not internal")
	}
}
