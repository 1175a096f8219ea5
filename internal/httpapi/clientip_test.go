package httpapi

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := prefixes("10.0.0.0/8", "192.168.1.10/32", "2001:db8:ffff::/48")
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name, peer string
		h          http.Header
		want       string
	}{
		{"plain peer", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"mapped IPv4", "[::ffff:203.0.113.7]:5000", nil, "203.0.113.7"},
		{"IPv6 per /64", "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
		{"IPv6 zone dropped", "[fe80::1%eth0]:443", nil, "fe80::/64"},
		{"spoofed XFF from untrusted peer", "203.0.113.7:5000", hdr("X-Forwarded-For", "1.2.3.4"), "203.0.113.7"},
		{"spoofed X-Real-IP from untrusted peer", "203.0.113.7:5000", hdr("X-Real-IP", "1.2.3.4"), "203.0.113.7"},
		{"trusted proxy, one hop", "10.1.2.3:80", hdr("X-Forwarded-For", "198.51.100.9"), "198.51.100.9"},
		{"client-forged left part ignored", "10.1.2.3:80", hdr("X-Forwarded-For", "1.1.1.1, 198.51.100.9"), "198.51.100.9"},
		{"chain of trusted proxies", "10.1.2.3:80", hdr("X-Forwarded-For", "6.6.6.6, 198.51.100.9, 192.168.1.10, 10.9.9.9"), "198.51.100.9"},
		{"several XFF lines read as one list", "10.1.2.3:80", hdr("X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "198.51.100.9, 10.2.2.2"), "198.51.100.9"},
		{"XFF wins over X-Real-IP", "10.1.2.3:80", hdr("X-Real-IP", "5.5.5.5", "X-Forwarded-For", "198.51.100.9"), "198.51.100.9"},
		{"X-Real-IP without XFF", "10.1.2.3:80", hdr("X-Real-IP", "198.51.100.9"), "198.51.100.9"},
		{"garbage X-Real-IP", "10.1.2.3:80", hdr("X-Real-IP", "not an ip"), "10.1.2.3"},
		{"only trusted hops", "10.1.2.3:80", hdr("X-Forwarded-For", "10.7.7.7"), "10.7.7.7"},
		{"garbage hop stops the walk", "10.1.2.3:80", hdr("X-Forwarded-For", "junk, 10.7.7.7"), "10.7.7.7"},
		{"IPv6 client behind proxy", "10.1.2.3:80", hdr("X-Forwarded-For", "2001:db8:aaaa:bbbb:1::1"), "2001:db8:aaaa:bbbb::/64"},
		{"mapped hop", "10.1.2.3:80", hdr("X-Forwarded-For", "::ffff:198.51.100.9"), "198.51.100.9"},
		{"hop with port", "10.1.2.3:80", hdr("X-Forwarded-For", "[2001:db8::1]:1234"), "2001:db8::/64"},
		{"trusted IPv6 proxy", "[2001:db8:ffff:1::1]:80", hdr("X-Forwarded-For", "198.51.100.9"), "198.51.100.9"},
		{"no proxies trusted", "10.1.2.3:80", hdr("X-Forwarded-For", "198.51.100.9"), "10.1.2.3"},
	}
	for _, tc := range cases {
		tr := trusted
		if tc.name == "no proxies trusted" {
			tr = nil
		}
		if got := ClientIP(tc.peer, tc.h, tr); got != tc.want {
			t.Errorf("%s: ClientIP = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func FuzzClientIP(f *testing.F) {
	trusted := prefixes("10.0.0.0/8", "::1/128")
	for _, s := range []string{"1.2.3.4", "junk, 10.7.7.7", "[2001:db8::1]:1234", "::ffff:1.2.3.4, ,", ""} {
		f.Add("10.1.2.3:80", s, "5.5.5.5")
		f.Add("203.0.113.7:5000", s, "")
	}
	f.Fuzz(func(t *testing.T, peer, xff, real string) {
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		if real != "" {
			h.Set("X-Real-IP", real)
		}
		got := ClientIP(peer, h, trusted)
		if a, ok := parseIP(peer); ok {
			if !isTrusted(a, trusted) && got != limitKey(a) {
				t.Fatalf("an untrusted peer's headers were believed: %q", got)
			}
			// Whatever the headers say, the key is an address or a /64.
			if _, err := netip.ParseAddr(got); err != nil {
				if p, err := netip.ParsePrefix(got); err != nil || p.Bits() != 64 {
					t.Fatalf("key %q is neither an IPv4 address nor an IPv6 /64", got)
				}
			}
		}
	})
}

func prefixes(ps ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}
