package httpapi

import (
	"net/http"

	"github.com/authd/authd/verify"
)

// handler is what routes registers on: an *http.ServeMux, or a test's
// recorder of the patterns.
type handler interface {
	Handle(pattern string, h http.Handler)
}

// routes registers every route of authd: this file is the map of the API,
// and openapi.yaml documents each route (openapi_test.go holds them to
// each other). A GET pattern also answers HEAD.
func routes(mux handler, o Options) {
	log, org := o.Logger, newOrigins(o.Projects)
	// The routes that reach Redis or PostgreSQL: MAX_INFLIGHT and
	// REQUEST_TIMEOUT bound them, and nothing else (bound.go).
	b := newBounds(o).wrap

	mux.Handle("GET /{$}", handleRoot(o.ProjectName))
	mux.Handle("GET /api/v1/health", handleHealth())
	mux.Handle("GET /api/v1/health/ready", handleReady(o.Readiness, log))
	mux.Handle("GET /api/v1/openapi.json", handleOpenAPI(openapiJSON()))

	// The interactive docs, assets embedded (docs.go).
	mux.Handle("GET /docs", handleDocs())
	mux.Handle("GET /docs/{$}", http.RedirectHandler("/docs", http.StatusPermanentRedirect))
	mux.Handle("GET /docs/assets/", handleDocsAssets())
	if o.ServeMetrics && o.Observe != nil && o.Observe.Metrics != nil {
		mux.Handle("GET /metrics", o.Observe.Metrics.Handler())
	}

	// /api/v1: the original's API, frozen.
	mux.Handle("POST /api/v1/auth/send-code", b(handleSendV1(o.Flow, org, log)))
	mux.Handle("POST /api/v1/auth/verify-code", b(handleVerifyV1(o.Flow, org, log)))

	// /api/v2: the same flow, richer answers.
	mux.Handle("POST /api/v2/auth/send-code", b(handleSendV2(o.Flow, org, log)))
	mux.Handle("POST /api/v2/auth/verify-code", b(handleVerifyV2(o.Flow, org, log)))
	mux.Handle("GET /api/v2/auth/deliveries/{delivery_id}", b(handleDelivery(o.Flow, log)))

	// The v2 tokens' keys and checks (tokens.go), answered from memory.
	if o.Tokens != nil && o.Proofs != nil {
		mux.Handle("GET /.well-known/jwks.json", handleJWKS(o.Tokens))
		mux.Handle("GET /.well-known/openid-configuration", handleDiscovery(o.Tokens, o.SignIn != nil))
		mux.Handle("POST /api/v2/auth/verify-proof", handleVerifyProof(o.Tokens, o.Proofs, org))
	}

	// The hosted sign-in: OpenID Connect's endpoints (oidc.go) and the
	// pages people see (signin.go), whose forms post to authd alone.
	if o.SignIn != nil && o.Tokens != nil && o.Tokens.Algorithm() != verify.HS256 {
		p := &pages{projects: o.Projects, issuer: o.Tokens.Issuer(), log: log}
		cop := http.NewCrossOriginProtection()
		mux.Handle("GET /oauth2/authorize", b(handleAuthorize(o.SignIn, p)))
		mux.Handle("POST /oauth2/authorize", b(handleAuthorize(o.SignIn, p)))
		mux.Handle("POST /oauth2/token", b(handleToken(o.SignIn, log)))
		mux.Handle("GET /oauth2/userinfo", b(handleUserInfo(o.SignIn, log)))
		mux.Handle("POST /oauth2/userinfo", b(handleUserInfo(o.SignIn, log)))
		mux.Handle("GET /oauth2/logout", handleEndSession(o.Tokens, p))
		mux.Handle("POST /oauth2/logout", handleEndSession(o.Tokens, p))
		mux.Handle("GET /signin", b(handleSignInPage(o.SignIn, p)))
		mux.Handle("POST /signin/email", b(handleSignInEmail(o.SignIn, p, cop)))
		mux.Handle("POST /signin/code", b(handleSignInCode(o.SignIn, p, cop)))
		mux.Handle("GET /signin/link", b(handleLinkPage(o.SignIn, p)))
		mux.Handle("POST /signin/link", b(handleLinkPost(o.SignIn, p, cop)))
		mux.Handle("GET /signin/wait", b(handleWait(o.SignIn, p)))
		mux.Handle("GET /signin/style.css", handleSignInStyle())
	}
}
