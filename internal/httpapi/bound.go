package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// bounds holds the auth endpoints' requests to two limits: at most
// maxInflight of them at once (MAX_INFLIGHT), each answered within
// timeout (REQUEST_TIMEOUT). routes.go wraps exactly the routes that reach
// Redis or PostgreSQL; the probes, the metrics, the keys and the docs are
// never held back: a probe refused under load would tell a load balancer
// or an orchestrator that a busy instance is dead, and it would pull or
// restart it at the worst moment.
type bounds struct {
	maxInflight int64         // 0: no bound
	timeout     time.Duration // 0: no deadline
	metrics     *Metrics      // nil: none
	inflight    atomic.Int64
}

func newBounds(o Options) *bounds {
	b := &bounds{maxInflight: int64(max(o.MaxInflight, 0)), timeout: max(o.RequestTimeout, 0)}
	if o.Observe != nil {
		b.metrics = o.Observe.Metrics
	}
	return b
}

// wrap bounds next. The body is read first, outside the bound: a client
// that sends its headers and then stalls holds a goroutine until the
// server's read timeout, never a place among the maxInflight, so a few
// hundred idle sockets cannot lock everyone out. A request over
// maxInflight is then answered 503 at once, with Retry-After and the usual
// body, before it reaches the flow: when the
// dependencies are slow, queueing more requests behind them only makes
// every one of them late and holds memory for each. A request let through
// gets a context that ends after timeout: whatever it waits on that
// honours it (a pooled connection, a PostgreSQL query) gives up, and the
// flow answers 503, having given back what it took (a consumed code is
// restored with a context of its own).
func (b *bounds) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = preread(r.Body, r.ContentLength)
		n := b.inflight.Add(1)
		defer b.inflight.Add(-1)
		if b.maxInflight > 0 && n > b.maxInflight {
			noteShed(r.Context(), "max_inflight")
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"detail": msgUnavailable})
			return
		}
		if b.metrics != nil {
			b.metrics.inflight.Inc()
			defer b.metrics.inflight.Dec()
		}
		if b.timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), b.timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// preread reads body (up to one byte over MaxBodyBytes, which readBody
// refuses) and returns a body that gives the same bytes, then the same
// error, to whoever reads it next; readBody takes them as they are.
func preread(body io.ReadCloser, size int64) io.ReadCloser {
	if body == nil || body == http.NoBody {
		return body
	}
	// A buffer the declared length fits, and its EOF (no growing).
	buf := make([]byte, 0, min(max(size+1, 512), MaxBodyBytes+1))
	lr := io.LimitReader(body, MaxBodyBytes+1)
	var err error
	for err == nil {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		var n int
		n, err = lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
	}
	body.Close()
	return &prereadBody{Reader: bytes.NewReader(buf), all: buf, err: err}
}

// prereadBody is a body read whole: its bytes, then the read's error.
type prereadBody struct {
	*bytes.Reader
	all []byte
	err error
}

func (p *prereadBody) Read(b []byte) (int, error) {
	n, err := p.Reader.Read(b)
	if err == io.EOF {
		err = p.err
	}
	return n, err
}

func (p *prereadBody) Close() error { return nil }

// whole returns the body's bytes and the read's error (nil for a body
// read to its end), when nothing has read from it yet (ok).
func (p *prereadBody) whole() (body []byte, ok bool, err error) {
	if p.Reader.Len() != len(p.all) {
		return nil, false, nil
	}
	p.Reader.Reset(nil)
	if p.err == io.EOF {
		return p.all, true, nil
	}
	return p.all, true, p.err
}
