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

	huma.Register(api, huma.Operation{
		OperationID: "health", Method: http.MethodGet, Path: "/api/v1/health",
		Summary: "Liveness", Tags: []string{"health"},
	}, s.handleHealth)

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
}
