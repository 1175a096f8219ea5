// Package httpapi is authd's HTTP layer: huma v2 on net/http. It decodes,
// calls the flow, encodes; the flow decides everything. The bodies of
// /api/v1 are frozen to the original FastAPI service's.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"runtime/debug"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/authd/authd"
	"github.com/authd/authd/verify"
)

// MaxBodyBytes is the largest request body accepted (DESIGN.md §1).
const MaxBodyBytes = 16 << 10

// Flow is what the HTTP layer needs of the service.
type Flow interface {
	SendCode(ctx context.Context, req authd.SendRequest) (authd.SendResult, error)
	VerifyCode(ctx context.Context, req authd.VerifyRequest) (authd.VerifyResult, error)
}

// Options are the HTTP layer's dependencies.
type Options struct {
	ProjectName string // PROJECT_NAME, for the root answer
	Version     string
	Flow        Flow
	Logger      *slog.Logger
	// Readiness backs /api/v1/health/ready and holds the auth endpoints at
	// 503 until start-up is done; nil: always ready (tests, benchmarks).
	Readiness *Readiness
	// Observe records each request's access-log line and metrics; nil: none.
	Observe *Observer
	// ServeMetrics adds GET /metrics (Observe.Metrics) to this handler:
	// METRICS_ADDR unset puts the metrics on the main port.
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
}

type server struct {
	Options
	log *slog.Logger
}

// New returns authd's HTTP handler.
func New(opts Options) http.Handler {
	s := &server{Options: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	mux := http.NewServeMux()
	cfg := huma.DefaultConfig(opts.ProjectName, opts.Version)
	// No $schema field or Link header in answers: v1 bodies are frozen.
	cfg.CreateHooks = nil
	cfg.Formats = map[string]huma.Format{"application/json": fastAPIJSON, "json": fastAPIJSON}
	cfg.OpenAPIPath = "/api/v1/openapi"
	cfg.DocsPath = ""
	cfg.SchemasPath = ""
	cfg.Info.Description = "Email one-time-code authentication. /api/v1 is the original service's API, frozen; /api/v2 adds to it."
	api := humago.New(mux, cfg)
	s.routes(mux, api)
	return s.recoverer(s.hardening(s.clientIP(s.observe(s.startupGate(s.notFound(mux))))))
}

// register adds a POST operation whose JSON body the handler decodes itself
// (FastAPI's error shapes, unknown fields ignored, no value echoed), while
// the OpenAPI document still shows the body's schema.
func (s *server) register(api huma.API, op huma.Operation, body reflect.Type, h func(context.Context, *rawInput) (*jsonOutput, error)) {
	op.MaxBodyBytes = MaxBodyBytes
	op.SkipValidateBody = true
	op.Errors = []int{http.StatusUnprocessableEntity, http.StatusTooManyRequests, http.StatusServiceUnavailable}
	if op.Path == "/api/v1/auth/verify-code" || op.Path == "/api/v2/auth/verify-code" {
		op.Errors = append([]int{http.StatusUnauthorized}, op.Errors...)
	}
	huma.Register(api, op, h)
	reg := api.OpenAPI().Components.Schemas
	stored := api.OpenAPI().Paths[op.Path].Post
	stored.RequestBody = &huma.RequestBody{
		Required: true,
		Content: map[string]*huma.MediaType{
			"application/json": {Schema: reg.Schema(body, true, "")},
		},
	}
	if out := responseTypes[op.OperationID]; out != nil {
		stored.Responses["200"].Content["application/json"].Schema = reg.Schema(out, true, "")
	}
	for code, r := range stored.Responses {
		if code != "200" && r.Content != nil {
			r.Content = map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(reflect.TypeFor[ErrorBody](), true, "")}}
		}
	}
}

// rawInput is every POST's input: the body as bytes and its content type.
type rawInput struct {
	ContentType string `header:"Content-Type"`
	RawBody     []byte `contentType:"application/json"`
}

// jsonOutput is every POST's output: a body and the RateLimit-* headers of
// the client-IP limit.
type jsonOutput struct {
	RateLimitLimit     string `header:"RateLimit-Limit"`
	RateLimitRemaining string `header:"RateLimit-Remaining"`
	RateLimitReset     string `header:"RateLimit-Reset"`
	Body               any
}

// fastAPIJSON writes bodies as FastAPI's JSONResponse did: compact, no
// trailing newline, <>& and non-ASCII characters as they are.
var fastAPIJSON = huma.Format{
	Marshal: func(w io.Writer, v any) error {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	},
	Unmarshal: json.Unmarshal,
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fastAPIJSON.Marshal(w, v)
}

// notFound answers unknown paths and methods as FastAPI did.
func (s *server) notFound(mux *http.ServeMux) http.Handler {
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
	w.Header().Del("X-Content-Type-Options")
	writeJSON(w.ResponseWriter, code, map[string]string{"detail": http.StatusText(code)})
}

func (w *statusOnly) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return len(b), nil
}

// recoverer turns a panic into a bare 500: never a stack trace in a body.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": msgInternal})
			}
		}()
		next.ServeHTTP(w, r)
	})
}
