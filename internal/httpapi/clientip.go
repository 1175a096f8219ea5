package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/netip"
)

type ctxKey int

const clientIPKey ctxKey = iota

// clientIP records the client's address for the rate limits: the socket
// peer, IPv4-mapped IPv6 unmapped (a dual-stack listener sees IPv4 clients
// that way).
func (s *server) clientIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := PeerIP(r.RemoteAddr)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey, ip)))
	})
}

// PeerIP returns the IP of a host:port remote address, unmapped; the input
// itself when it does not parse.
func PeerIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return a.Unmap().WithZone("").String()
}

func clientIPFrom(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey).(string)
	return ip
}
