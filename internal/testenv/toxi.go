package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// A Proxy is a TCP proxy between authd and one real component (Redis,
// PostgreSQL, an SMTP server), run in the test's own process by toxiproxy,
// through which the test injects the faults of a network: latency, a
// connection reset or gone silent, the component gone altogether.
type Proxy struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
	n     atomic.Int64 // names the toxics
}

// StartProxy starts a proxy on a free loopback port that forwards to
// upstream ("host:port"), and stops it when t ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, t.Name(), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("testenv: toxiproxy to %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{t: t, proxy: p}
}

// Addr is where the proxy listens: "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.proxy.Listen }

// Port is the proxy's port.
func (p *Proxy) Port() int {
	_, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	return n
}

// URL is rawURL (a redis:// or postgres:// URL of the upstream) with its
// host and port replaced by the proxy's.
func (p *Proxy) URL(rawURL string) string {
	p.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		p.t.Fatalf("testenv: %v", err)
	}
	u.Host = p.Addr()
	return u.String()
}

// Toxic adds one of toxiproxy's toxics: typ is its type ("latency",
// "timeout", "reset_peer", "limit_data", ...), stream "downstream" (what
// the component answers) or "upstream" (what authd sends), attrs its
// attributes ({"latency": 200} for 200 ms). It applies to the connections
// open now and to later ones, until remove is called.
func (p *Proxy) Toxic(typ, stream string, attrs map[string]any) (remove func()) {
	p.t.Helper()
	name := fmt.Sprintf("%s_%s_%d", typ, stream, p.n.Add(1))
	body, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "attributes": attrs})
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.proxy.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		p.t.Fatalf("testenv: toxic %s: %v", typ, err)
	}
	return func() { p.proxy.Toxics.RemoveToxic(context.Background(), name) }
}

// Cut closes every connection through the proxy and refuses new ones, as a
// component that went away, until Restore.
func (p *Proxy) Cut() { p.proxy.Stop() }

// Restore listens again on the same port.
func (p *Proxy) Restore() {
	p.t.Helper()
	if err := p.proxy.Start(); err != nil {
		p.t.Fatalf("testenv: toxiproxy restart: %v", err)
	}
}
