package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

type ctxKey int

const clientIPKey ctxKey = iota

// clientIP records the client's address for the rate limits (DESIGN.md §2).
func clientIP(trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := ClientIP(r.RemoteAddr, r.Header, trusted)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey, ip)))
	})
}

// ClientIP returns the address the limits count a request against:
//
//   - the socket peer, unless it lies in one of trusted;
//   - behind trusted proxies, the right-most address of all X-Forwarded-For
//     lines that is not itself a trusted proxy (each proxy appends the
//     address it saw, so everything left of the first untrusted hop from the
//     right may be forged by the client); X-Real-IP only when there is no
//     X-Forwarded-For; the peer when neither gives a usable address;
//   - IPv4-mapped IPv6 addresses as the IPv4 address, and real IPv6
//     addresses as their /64: one subscriber usually holds a whole /64.
//
// Headers from an untrusted peer are ignored: anybody can send them.
func ClientIP(remoteAddr string, h http.Header, trusted []netip.Prefix) string {
	peer, ok := parseIP(remoteAddr)
	if !ok {
		return remoteAddr
	}
	if !isTrusted(peer, trusted) {
		return limitKey(peer)
	}
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		// All lines, in order, as one list: proxies may add a line of
		// their own instead of appending to the last.
		var hops []string
		for _, line := range xff {
			hops = append(hops, strings.Split(line, ",")...)
		}
		for i := len(hops) - 1; i >= 0; i-- {
			a, ok := parseIP(strings.TrimSpace(hops[i]))
			if !ok {
				// A hop that does not parse was written by someone we
				// do not trust: stop at the last good one we have.
				break
			}
			if !isTrusted(a, trusted) {
				return limitKey(a)
			}
			peer = a
		}
		// Every hop was a trusted proxy (or garbage): count the left-most
		// trusted one we reached.
		return limitKey(peer)
	}
	if real := h.Get("X-Real-IP"); real != "" {
		if a, ok := parseIP(strings.TrimSpace(real)); ok {
			return limitKey(a)
		}
	}
	return limitKey(peer)
}

// parseIP reads "ip", "ip:port", "[ipv6]:port" or "[ipv6]", unmapped and
// without a zone.
func parseIP(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// limitKey is the string the limits count: an IPv4 address, or an IPv6 /64.
func limitKey(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func clientIPFrom(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey).(string)
	return ip
}
