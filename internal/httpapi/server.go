// Package httpapi is authd's HTTP layer, on net/http alone: routes.go maps
// the API, each handler decodes, calls the flow and encodes; the flow
// decides everything. The bodies of /api/v1 are frozen to the original
// FastAPI service's, and openapi.yaml, served as the API's document, says
// what every route answers.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/verify"
)

// MaxBodyBytes is the largest request body accepted (DESIGN.md §1).
const MaxBodyBytes = 16 << 10

// Flow is what the HTTP layer needs of the service.
type Flow interface {
	SendCode(ctx context.Context, req authd.SendRequest) (authd.SendResult, error)
	VerifyCode(ctx context.Context, req authd.VerifyRequest) (authd.VerifyResult, error)
	Delivery(ctx context.Context, id string) (authd.Delivery, error)
}

// Options are the HTTP layer's dependencies.
type Options struct {
	ProjectName string // PROJECT_NAME, for the root answer
	Flow        Flow
	Logger      *slog.Logger
	// Readiness backs /api/v1/health/ready and holds the auth endpoints at
	// 503 until start-up is done; nil: always ready (tests, benchmarks).
	Readiness *Readiness
	// Observe records each request's access-log line and metrics; nil: none.
	Observe *Observer
	// ServeMetrics adds GET /metrics (Observe.Metrics) to this handler:
	// only when METRICS_ADDR names the main listener on purpose.
	ServeMetrics bool
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP
	// headers are believed (TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// Projects is the registry; its allowed origins get CORS. Nil: none.
	Projects *authd.Registry
	// Tokens serves the published keys, the discovery document and the
	// token half of verify-proof (tokens.go); nil: none of these routes.
	Tokens Tokens
	// Proofs checks v1 proofs for verify-proof (SECRET_KEY).
	Proofs *verify.ProofVerifier
	// MaxInflight bounds the auth requests served at once (MAX_INFLIGHT):
	// more are answered 503 at once (bound.go). 0: no bound.
	MaxInflight int
	// RequestTimeout is each auth request's deadline (REQUEST_TIMEOUT).
	// 0: none.
	RequestTimeout time.Duration
	// SignIn is the hosted sign-in (OpenID Connect); nil, or no Tokens:
	// none of its routes.
	SignIn SignIn
}

// New returns authd's HTTP handler.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	routes(mux, opts)
	var h http.Handler = notFound(mux)
	h = startupGate(opts.Readiness, h)
	h = observe(opts.Observe, h)
	h = clientIP(opts.TrustedProxies, h)
	h = hardening(opts.Projects, h)
	return recoverer(opts.Logger, h)
}

// writeJSON writes v as FastAPI's JSONResponse did: compact, no trailing
// newline, <>& and non-ASCII characters as they are.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only the handlers' own types reach here: a bug, not a request's
		// fault.
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// notFound answers unknown paths and methods as FastAPI did.
func notFound(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			mux.ServeHTTP(&statusOnly{ResponseWriter: w}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusOnly turns net/http's plain-text 404 and 405 into JSON bodies.
type statusOnly struct {
	http.ResponseWriter
	wrote bool
}

func (w *statusOnly) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	writeJSON(w.ResponseWriter, code, map[string]string{"detail": http.StatusText(code)})
}

func (w *statusOnly) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return len(b), nil
}

// recoverer turns a panic into a bare 500: never a stack trace in a body.
func recoverer(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": msgInternal})
			}
		}()
		next.ServeHTTP(w, r)
	})
}
