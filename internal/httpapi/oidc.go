package httpapi

// The OpenID Connect endpoints of the hosted sign-in: authorization
// (RFC 6749 §4.1.1, OIDC Core §3.1.2, RFC 7636, RFC 9207), token (RFC 6749
// §4.1.3, §5), userinfo (OIDC Core §5.3, RFC 6750) and end_session (OIDC
// RP-Initiated Logout 1.0).

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/authd/authd"
	"github.com/authd/authd/locale"
	"github.com/authd/authd/verify"
)

// authorizeParams are the parameters an authorization request may not
// repeat (RFC 6749 §3.1).
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint", "ui_locales", "response_mode"}

// handleAuthorize starts a sign-in. An unknown client or an unregistered
// redirect_uri is an error page, never a redirect (RFC 6749 §4.1.2.1);
// every other error goes back to the client's redirect_uri with error,
// state and iss. Success is the address form of the new sign-in.
func handleAuthorize(si SignIn, p *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
			if err := r.ParseForm(); err != nil {
				p.message(w, r, http.StatusBadRequest, lang(r, ""), "", lang(r, "").T("error.title"), lang(r, "").T("error.request", "detail", "the form does not parse"), "")
				return
			}
			q = r.PostForm
		}
		l := lang(r, q.Get("ui_locales"))
		for _, k := range []string{"client_id", "redirect_uri"} {
			if len(q[k]) > 1 {
				p.message(w, r, http.StatusBadRequest, l, "", l.T("error.title"), l.T("error.request", "detail", k+" is given more than once"), "")
				return
			}
		}
		proj, err := si.Client(q.Get("client_id"), q.Get("redirect_uri"))
		if err != nil {
			text := l.T("error.client")
			var e *authd.Error
			if errors.As(err, &e) && e.Field == "redirect_uri" {
				text = l.T("error.redirect")
			}
			p.message(w, r, http.StatusBadRequest, l, proj.DisplayName, l.T("error.title"), text, "")
			return
		}
		if r.Method == http.MethodHead {
			// A HEAD (a link checker, a scanner) starts nothing: every
			// sign-in is a record, and a limited one.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			return
		}
		req := authd.AuthorizeRequest{
			ClientID: q.Get("client_id"), RedirectURI: q.Get("redirect_uri"), ResponseType: q.Get("response_type"),
			Scope: q.Get("scope"), State: q.Get("state"), Nonce: q.Get("nonce"), CodeChallenge: q.Get("code_challenge"),
			CodeChallengeMethod: q.Get("code_challenge_method"), Prompt: q.Get("prompt"), MaxAge: q.Get("max_age"),
			LoginHint: q.Get("login_hint"), UILocales: q.Get("ui_locales"), ResponseMode: q.Get("response_mode"),
			Request: q.Has("request"), RequestURI: q.Has("request_uri"),
			Agent: describeAgent(r.UserAgent()), ClientIP: clientIPFrom(r.Context()),
		}
		for _, k := range authorizeParams {
			if len(q[k]) > 1 {
				req.Repeated = k
				break
			}
		}
		f, secret, err := si.StartSignIn(r.Context(), req)
		if authd.ErrorCode(err) == authd.ERATELIMITED {
			// Too many sign-ins from this IP: said to the person, as the
			// API's 429 (RFC 6749 has no error for it).
			p.failure(w, r, l, proj.DisplayName, err)
			return
		}
		if err != nil {
			var oe *authd.OAuthError
			params := url.Values{"state": {req.State}, "iss": {p.issuer}}
			switch {
			case errors.As(err, &oe):
				params.Set("error", oe.Code)
				params.Set("error_description", oe.Description)
			case authd.ErrorCode(err) == authd.EUNAVAILABLE:
				params.Set("error", "temporarily_unavailable")
			default:
				p.log.Error("sign-in not started", "err", redactAddresses(err))
				params.Set("error", "server_error")
			}
			http.Redirect(w, r, authd.AuthorizationRedirect(req.RedirectURI, params), http.StatusSeeOther)
			return
		}
		// The address form at once: its POST goes to /signin/email, which
		// the cookie is scoped to.
		p.setFlowCookie(w, f, secret)
		p.formPage(w, r, si, f, http.StatusOK, "", false)
	})
}

// describeAgent is a User-Agent as a person reads it: "Firefox on
// Windows". Unknown parts are left out; the raw header is not shown.
func describeAgent(ua string) string {
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"HeadlessChrome/", "Chrome"},
		{"Chrome/", "Chrome"}, {"Safari/", "Safari"}, {"curl/", "curl"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	os := ""
	for _, o := range []struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			os = o.name
			break
		}
	}
	switch {
	case browser != "" && os != "":
		return browser + " / " + os
	case browser != "":
		return browser
	case os != "":
		return os
	}
	return ""
}

// oauthBody is an error answer of the token and userinfo endpoints (RFC
// 6749 §5.2): error, not FastAPI's detail.
type oauthBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// noStore marks a token answer as never to be cached (RFC 6749 §5.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// handleToken redeems an authorization code. A form body (RFC 6749
// §4.1.3), not JSON; no cross-origin protection: it carries no ambient
// credential, and CORS answers registered origins only (hardening).
func handleToken(si SignIn, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		fail := func(status int, code, desc string) {
			writeJSON(w, status, oauthBody{Error: code, Description: desc})
		}
		ct := r.Header.Get("Content-Type")
		if mt, _, _ := strings.Cut(ct, ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
			fail(http.StatusUnsupportedMediaType, "invalid_request", "send application/x-www-form-urlencoded (RFC 6749 §4.1.3)")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				fail(http.StatusRequestEntityTooLarge, "invalid_request", "body too large")
				return
			}
			fail(http.StatusBadRequest, "invalid_request", "the body does not parse as a form")
			return
		}
		f := r.PostForm
		for k, vs := range f {
			if len(vs) > 1 {
				fail(http.StatusBadRequest, "invalid_request", k+" is given more than once")
				return
			}
		}
		req := authd.TokenRequest{
			GrantType: f.Get("grant_type"), Code: f.Get("code"), RedirectURI: f.Get("redirect_uri"),
			CodeVerifier: f.Get("code_verifier"), ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"),
		}
		if user, pass, ok := basicAuth(r); ok {
			if req.ClientSecret != "" || (req.ClientID != "" && req.ClientID != user) {
				fail(http.StatusBadRequest, "invalid_request", "client credentials in the header and in the body")
				return
			}
			req.ClientID, req.ClientSecret, req.Basic = user, pass, true
		} else if r.Header.Get("Authorization") != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="authd"`)
			fail(http.StatusUnauthorized, "invalid_client", "the Authorization header is not HTTP Basic client credentials")
			return
		}
		res, err := si.Redeem(r.Context(), req)
		if err != nil {
			var oe *authd.OAuthError
			switch {
			case errors.As(err, &oe) && oe.Code == "invalid_client":
				// RFC 6749 §5.2: 401, and the scheme the client used.
				if req.Basic {
					w.Header().Set("WWW-Authenticate", `Basic realm="authd"`)
				}
				fail(http.StatusUnauthorized, oe.Code, oe.Description)
			case errors.As(err, &oe):
				fail(http.StatusBadRequest, oe.Code, oe.Description)
			case authd.ErrorCode(err) == authd.EUNAVAILABLE:
				log.Warn("token endpoint: dependency unavailable", "err", redactAddresses(err))
				w.Header().Set("Retry-After", "1")
				fail(http.StatusServiceUnavailable, "temporarily_unavailable", "")
			default:
				log.Warn("token endpoint failed", "err", redactAddresses(err))
				fail(http.StatusInternalServerError, "server_error", "")
			}
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// basicAuth reads client_secret_basic: the id and secret are
// form-encoded before base64 (RFC 6749 §2.3.1).
func basicAuth(r *http.Request) (string, string, bool) {
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", false
	}
	u, err1 := url.QueryUnescape(user)
	p, err2 := url.QueryUnescape(pass)
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	return u, p, true
}

// handleUserInfo answers the claims of an access token (a Bearer token in
// the Authorization header, RFC 6750 §2.1).
func handleUserInfo(si SignIn, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="authd"`)
			writeJSON(w, http.StatusUnauthorized, oauthBody{Error: "invalid_request", Description: "send the access token as a Bearer token"})
			return
		}
		info, err := si.UserInfo(r.Context(), strings.TrimSpace(tok))
		if err != nil {
			var oe *authd.OAuthError
			if errors.As(err, &oe) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="authd", error="invalid_token"`)
				writeJSON(w, http.StatusUnauthorized, oauthBody{Error: oe.Code, Description: oe.Description})
				return
			}
			log.Warn("userinfo: dependency unavailable", "err", redactAddresses(err))
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, oauthBody{Error: "temporarily_unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
}

// handleEndSession is RP-Initiated Logout. authd keeps no session, so
// there is nothing of its own to end: it sends the browser back to a
// registered post_logout_redirect_uri (with state), or says the user is
// signed out. An unregistered post_logout_redirect_uri is an error page.
func handleEndSession(tokens Tokens, p *pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
			if r.ParseForm() == nil {
				q = r.PostForm
			}
		}
		l := lang(r, q.Get("ui_locales"))
		client := q.Get("client_id")
		if hint := q.Get("id_token_hint"); hint != "" {
			v := verify.TokenVerifier{Keys: tokens, Issuer: tokens.Issuer(), AnyAudience: true}
			c, err := v.Verify(r.Context(), hint)
			// An expired hint still names its client (RP-Initiated Logout
			// §2); an RS256 one is not read here and is ignored.
			if why := verify.ReasonOf(err); err != nil && why != verify.ReasonExpired && why != verify.ReasonUnsupportedAlg {
				p.message(w, r, http.StatusBadRequest, l, "", l.T("error.title"), l.T("error.request", "detail", "id_token_hint is not a token of this issuer"), "")
				return
			}
			if err == nil && len(c.Audience) == 1 {
				if client != "" && client != c.Audience[0] {
					p.message(w, r, http.StatusBadRequest, l, "", l.T("error.title"), l.T("error.request", "detail", "id_token_hint is not for client_id"), "")
					return
				}
				client = c.Audience[0]
			}
		}
		proj, _ := p.projects.Lookup(client)
		if to := q.Get("post_logout_redirect_uri"); to != "" {
			ok := false
			for _, u := range proj.PostLogoutRedirectURIs {
				ok = ok || u == to
			}
			if !ok {
				p.message(w, r, http.StatusBadRequest, l, proj.DisplayName, l.T("error.title"), l.T("error.redirect"), "")
				return
			}
			http.Redirect(w, r, authd.AuthorizationRedirect(to, url.Values{"state": {q.Get("state")}}), http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		p.message(w, r, http.StatusOK, l, proj.DisplayName, l.T("logout.title"), "", l.T("logout.lead"))
	})
}

// discoveryOIDC adds the hosted sign-in's endpoints to the discovery
// document (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207).
func discoveryOIDC(d map[string]any, iss string) {
	base := strings.TrimSuffix(iss, "/")
	algs := []string{verify.EdDSA, "RS256"}
	d["authorization_endpoint"] = base + "/oauth2/authorize"
	d["token_endpoint"] = base + "/oauth2/token"
	d["userinfo_endpoint"] = base + "/oauth2/userinfo"
	d["end_session_endpoint"] = base + "/oauth2/logout"
	d["response_types_supported"] = []string{"code"}
	d["response_modes_supported"] = []string{"query"}
	d["grant_types_supported"] = []string{"authorization_code"}
	d["code_challenge_methods_supported"] = []string{"S256"}
	d["id_token_signing_alg_values_supported"] = algs
	d["scopes_supported"] = []string{"openid", "email"}
	d["token_endpoint_auth_methods_supported"] = []string{"client_secret_basic", "client_secret_post", "none"}
	d["claims_supported"] = []string{"iss", "sub", "aud", "email", "email_verified", "iat", "exp", "jti", "nonce", "auth_time", "amr"}
	d["prompt_values_supported"] = []string{"none", "login", "consent", "select_account"}
	d["ui_locales_supported"] = locale.Languages()
	d["authorization_response_iss_parameter_supported"] = true
	d["request_parameter_supported"] = false
	d["request_uri_parameter_supported"] = false
	d["claims_parameter_supported"] = false
}
