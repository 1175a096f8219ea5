package httpapi

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// routes registers every route of authd: this file is the map of the API.
func (s *server) routes(mux *http.ServeMux, api huma.API) {
	// The original's root answer. Outside huma: huma's "/" would be a
	// catch-all on net/http's mux.
	mux.Handle("GET /{$}", s.handleRoot())
	// The interactive docs, assets embedded (docs.go).
	mux.Handle("GET /docs", s.handleDocs())
	mux.Handle("GET /docs/assets/", s.handleDocsAssets())
	if s.ServeMetrics && s.Observe != nil && s.Observe.Metrics != nil {
		mux.Handle("GET /metrics", s.Observe.Metrics.Handler())
	}

	huma.Register(api, huma.Operation{
		OperationID: "health", Method: http.MethodGet, Path: "/api/v1/health",
		Summary: "Liveness", Tags: []string{"health"},
	}, s.handleHealth)
	huma.Register(api, huma.Operation{
		OperationID: "ready", Method: http.MethodGet, Path: "/api/v1/health/ready",
		Summary: "Readiness: database and Redis answer, start-up done, not shutting down",
		Tags:    []string{"health"}, Errors: []int{http.StatusServiceUnavailable},
	}, s.handleReady)

	// /api/v1: the original's API, frozen.
	s.register(api, huma.Operation{
		OperationID: "send-code-v1", Method: http.MethodPost, Path: "/api/v1/auth/send-code",
		Summary:     "Email a verification code",
		Description: "Emails a 6-digit code to the address. The answer is the same for every valid address.",
		Tags:        []string{"auth v1"},
	}, sendRequestSchema, s.handleSendV1)
	s.register(api, huma.Operation{
		OperationID: "verify-code-v1", Method: http.MethodPost, Path: "/api/v1/auth/verify-code",
		Summary:     "Verify a code, get a signed identity proof",
		Description: "On success answers the original's six-field proof, signed with HMAC-SHA256(SECRET_KEY).",
		Tags:        []string{"auth v1"},
	}, verifyRequestSchema, s.handleVerifyV1)

	// /api/v2: the same flow, richer answers.
	s.register(api, huma.Operation{
		OperationID: "send-code-v2", Method: http.MethodPost, Path: "/api/v2/auth/send-code",
		Summary: "Email a verification code (v2)", Tags: []string{"auth v2"},
	}, sendRequestSchema, s.handleSendV2)
	s.register(api, huma.Operation{
		OperationID: "verify-code-v2", Method: http.MethodPost, Path: "/api/v2/auth/verify-code",
		Summary: "Verify a code (v2)", Tags: []string{"auth v2"},
	}, verifyV2RequestSchema, s.handleVerifyV2)
	s.registerDeliveries(api) // GET /api/v2/auth/deliveries/{delivery_id} (deliveries.go)

	// The v2 tokens' keys and checks (tokens.go), answered from memory.
	if s.Tokens != nil && s.Proofs != nil {
		mux.Handle("GET /.well-known/jwks.json", s.handleJWKS())
		mux.Handle("GET /.well-known/openid-configuration", s.handleDiscovery())
		s.register(api, huma.Operation{
			OperationID: "verify-proof-v2", Method: http.MethodPost, Path: "/api/v2/auth/verify-proof",
			Summary:     "Check a token or a v1 proof",
			Description: "For services that cannot verify locally. Every well-formed request gets 200 {valid, reason, claims}; reason is one of the documented list.",
			Tags:        []string{"auth v2"},
		}, verifyProofRequestSchema, s.handleVerifyProof)
	}
}
