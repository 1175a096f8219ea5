package main

// The hosted sign-in end to end, as a relying party sees it: a client
// written with golang.org/x/oauth2 and github.com/coreos/go-oidc/v3 (the
// libraries a Go service would use) completes the authorization code flow
// with PKCE against authd started through run(), on PostgreSQL, Redis and
// a real SMTP server, and verifies the ID token through discovery. The
// browser is a cookie jar here (the pages are plain forms); the browser
// tests drive Chromium (signin_browser_test.go).

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authd/authd/internal/smtptest"
)

// rpSecret is the confidential test client's secret; the registry holds
// its SHA-256 only.
const rpSecret = "rp-secret-0123456789abcdef0123456789abcdef"

// signinEnv is a production instance whose registry has the test clients:
//   - app: confidential, EdDSA, a loopback redirect URI (any port)
//   - spa: public (PKCE only), RS256, an https redirect URI
type signinEnv struct {
	inst *instance
	smtp *smtptest.Server
}

func startSignIn(t *testing.T, extra map[string]string) signinEnv {
	t.Helper()
	return startSignInOn(t, newProduction(t), extra)
}

// startSignInOn is startSignIn on env's backends.
func startSignInOn(t *testing.T, env production, extra map[string]string) signinEnv {
	t.Helper()
	sum := sha256.Sum256([]byte(rpSecret))
	projects := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(projects, []byte(`
- id: app
  display_name: Example App
  redirect_uris: [http://127.0.0.1/callback]
  post_logout_redirect_uris: [http://127.0.0.1/bye]
  client_secret_sha256: `+hex.EncodeToString(sum[:])+`
  accent_color: "#0f766e"
- id: spa
  display_name: Example SPA
  redirect_uris: [https://spa.example.com/cb]
  id_token_signed_response_alg: RS256
`), 0o600)
	port := freePort(t)
	env.Env["PORT"] = strconv.Itoa(port)
	env.Env["AUTHD_ISSUER"] = "http://127.0.0.1:" + strconv.Itoa(port)
	env.Env["PROJECTS_FILE"] = projects
	for k, v := range extra {
		env.Env[k] = v
	}
	return signinEnv{inst: start(t, env.Env), smtp: env.SMTP}
}

// browser is a user agent without script: a cookie jar that follows
// authd's own redirects and stops at the client's.
type browser struct {
	t      *testing.T
	c      *http.Client
	origin string
	agent  string
}

func newBrowser(t *testing.T, origin, agent string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, origin: origin, agent: agent, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is one answer: its status, the Location of a redirect, its body.
type page struct {
	Status   int
	Location string
	Body     string
	Header   http.Header
}

func (b *browser) do(method, u string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// A form of authd's own page, as a browser says it.
		req.Header.Set("Origin", b.origin)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	req.Header.Set("User-Agent", b.agent)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p := page{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(raw), Header: resp.Header}
	return p
}

// get fetches u and follows redirects that stay on authd.
func (b *browser) get(u string) page {
	b.t.Helper()
	return b.follow(b.do(http.MethodGet, u, nil))
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.follow(b.do(http.MethodPost, b.origin+path, form))
}

func (b *browser) follow(p page) page {
	b.t.Helper()
	for range 5 {
		if p.Status/100 != 3 || !strings.HasPrefix(absolute(b.origin, p.Location), b.origin+"/") {
			return p
		}
		p = b.do(http.MethodGet, absolute(b.origin, p.Location), nil)
	}
	return p
}

func absolute(origin, loc string) string {
	if strings.HasPrefix(loc, "/") {
		return origin + loc
	}
	return loc
}

var (
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)
	pickRE   = regexp.MustCompile(`name="pick" value="([0-9]+)"`)
	numberRE = regexp.MustCompile(`<p class="number"[^>]*>([0-9]+)</p>`)
	linkRE   = regexp.MustCompile(`https?://[^\s"<>]+/signin/link\?[^\s"<>]+`)
)

// hidden returns a page's hidden form fields (the first form's values win).
func hidden(t *testing.T, p page) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(p.Body, -1) {
		if v.Get(m[1]) == "" {
			v.Set(m[1], htmlUnescape(m[2]))
		}
	}
	if v.Get("csrf") == "" {
		t.Fatalf("no form token on the page (%d):\n%s", p.Status, p.Body)
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

// rp is a relying party written as a Go service would write one.
type rp struct {
	ctx      context.Context
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newRP(t *testing.T, issuer, clientID, secret, redirect string) *rp {
	t.Helper()
	// The library's requests go through the spec-validating client: the
	// discovery, token and userinfo answers must be what the OpenAPI
	// document says.
	ctx := oidc.ClientContext(context.Background(), client)
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &rp{
		ctx: ctx, provider: provider,
		conf: oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: provider.Endpoint(),
			RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "email"}},
		verifier: provider.Verifier(&oidc.Config{ClientID: clientID}),
	}
}

// flow is one sign-in's client-side secrets.
type flow struct {
	state, nonce, verifier string
}

func newFlow() flow {
	return flow{state: randHex(8), nonce: randHex(8), verifier: oauth2.GenerateVerifier()}
}

func (r *rp) authURL(f flow, opts ...oauth2.AuthCodeOption) string {
	return r.conf.AuthCodeURL(f.state, append(opts, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier))...)
}

// editedAuthURL is authURL with its query edited: a client that asks
// for what it should not.
func (r *rp) editedAuthURL(f flow, edit func(url.Values)) string {
	u, _ := url.Parse(r.authURL(f))
	q := u.Query()
	edit(q)
	u.RawQuery = q.Encode()
	return u.String()
}

// wantAuthorizeError checks that the authorization request came back to
// the client's redirect URI with the error want, its state and authd's
// iss (RFC 9207).
func (r *rp) wantAuthorizeError(t *testing.T, p page, f flow, iss, name, want string) {
	t.Helper()
	loc, _ := url.Parse(p.Location)
	if p.Status != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != want ||
		loc.Query().Get("state") != f.state || loc.Query().Get("iss") != iss || !strings.HasPrefix(p.Location, r.conf.RedirectURL+"?") {
		t.Errorf("%s: %d %q, want error=%s", name, p.Status, p.Location, want)
	}
}

// finish is the client's callback: state and iss checked (RFC 9207), the
// code exchanged with the verifier, the ID token verified through
// discovery, its nonce checked.
func (r *rp) finish(t *testing.T, callback string, f flow) (*oidc.IDToken, *oauth2.Token, error) {
	t.Helper()
	u, err := url.Parse(callback)
	if err != nil {
		return nil, nil, err
	}
	q := u.Query()
	if e := q.Get("error"); e != "" {
		return nil, nil, fmt.Errorf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != f.state {
		return nil, nil, fmt.Errorf("state mismatch")
	}
	if q.Get("iss") != r.provider.Endpoint().AuthURL[:len(r.provider.Endpoint().AuthURL)-len("/oauth2/authorize")] {
		return nil, nil, fmt.Errorf("iss %q is not the issuer", q.Get("iss"))
	}
	tok, err := r.conf.Exchange(r.ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		return nil, nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		return nil, tok, err
	}
	if idt.Nonce != f.nonce {
		return nil, tok, fmt.Errorf("nonce mismatch")
	}
	return idt, tok, nil
}

// toCodePage starts a sign-in in b and submits the address: the code page.
func toCodePage(t *testing.T, b *browser, authURL, email string) page {
	t.Helper()
	p := b.get(authURL)
	if p.Status != 200 || !strings.Contains(p.Body, `autocomplete="email"`) {
		t.Fatalf("authorize: %d %s\n%s", p.Status, p.Location, p.Body)
	}
	form := hidden(t, p)
	form.Set("email", email)
	p = b.post("/signin/email", form)
	if p.Status != 200 || !strings.Contains(p.Body, `autocomplete="one-time-code"`) {
		t.Fatalf("email form: %d\n%s", p.Status, p.Body)
	}
	return p
}

// signInMail waits for the sign-in mail to email after the first n mails:
// its code and its link.
func signInMail(t *testing.T, s *smtptest.Server, email string, n int) (code, link string) {
	t.Helper()
	for _, m := range s.Wait(t, n+1, 10*time.Second)[n:] {
		if slices.Contains(m.To, email) {
			link = linkRE.FindString(m.Text)
			if link == "" || !strings.Contains(m.HTML, htmlEscapeAmp(link)) {
				t.Fatalf("the mail has no link, or not the same in both parts:\n%s\n%s", m.Text, m.HTML)
			}
			return smtptest.CodeFrom(m), link
		}
	}
	t.Fatalf("no mail to %s", email)
	return "", ""
}

func htmlEscapeAmp(s string) string { return strings.ReplaceAll(s, "&", "&amp;") }

func claimsOf(t *testing.T, idt *oidc.IDToken) map[string]any {
	t.Helper()
	var c map[string]any
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// The code typed in the browser that started: the client gets an ID token
// it verifies through discovery (EdDSA), with aud, nonce, auth_time and
// amr ["otp"], and an access token the userinfo endpoint answers;
// client_secret_basic; a loopback redirect URI on a port not registered
// (RFC 8252 §7.3).
func TestSignInCodeTyped(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1:45678/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
	email := uniqueEmail("typed")
	f := newFlow()
	n := len(e.smtp.Messages())
	p := toCodePage(t, b, r.authURL(f), email)
	code, _ := signInMail(t, e.smtp, email, n)
	form := hidden(t, p)
	form.Set("code", code)
	p = b.post("/signin/code", form)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, "http://127.0.0.1:45678/callback?") {
		t.Fatalf("code form: %d %q\n%s", p.Status, p.Location, p.Body)
	}
	idt, tok, err := r.finish(t, p.Location, f)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	c := claimsOf(t, idt)
	if c["email"] != email || c["email_verified"] != true || fmt.Sprint(c["amr"]) != "[otp]" || c["auth_time"] == nil {
		t.Fatalf("claims %v", c)
	}
	if hdr := idTokenHeader(t, tok); hdr["alg"] != "EdDSA" {
		t.Fatalf("alg %v", hdr["alg"])
	}
	info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Email != email || info.Subject != idt.Subject {
		t.Fatalf("userinfo: %+v %v", info, err)
	}
}

func idTokenHeader(t *testing.T, tok *oauth2.Token) map[string]any {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	h, _, _ := strings.Cut(raw, ".")
	var m map[string]any
	if err := jsonB64(h, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The link in the browser that started: a scanner's GET and HEAD before
// the user change nothing (the link still works), the POST of the page
// signs in (amr ["link"]), and the code of the same mail is spent with it.
// A used link is a page that says so.
func TestSignInLinkSameBrowser(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15")
	email := uniqueEmail("link")
	f := newFlow()
	n := len(e.smtp.Messages())
	codePage := toCodePage(t, b, r.authURL(f), email)
	code, link := signInMail(t, e.smtp, email, n)
	if !strings.HasPrefix(link, iss+"/signin/link?") {
		t.Fatalf("link %q is not built from AUTHD_ISSUER", link)
	}
	scanner := newBrowser(t, iss, "Mozilla/5.0 (compatible; SafeLinks scanner)")
	for range 3 {
		if p := scanner.do(http.MethodGet, link, nil); p.Status != 200 {
			t.Fatalf("scanner GET: %d", p.Status)
		}
		if p := scanner.do(http.MethodHead, link, nil); p.Status != 200 || p.Body != "" {
			t.Fatalf("scanner HEAD: %d %q", p.Status, p.Body)
		}
	}
	p := b.get(link)
	if p.Status != 200 || !strings.Contains(p.Body, "Continue to Example App") {
		t.Fatalf("link page: %d\n%s", p.Status, p.Body)
	}
	p = b.post("/signin/link", hidden(t, p))
	if p.Status != http.StatusSeeOther {
		t.Fatalf("confirm: %d\n%s", p.Status, p.Body)
	}
	idt, _, err := r.finish(t, p.Location, f)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if c := claimsOf(t, idt); fmt.Sprint(c["amr"]) != "[link]" {
		t.Fatalf("amr %v", c["amr"])
	}
	// One credential: the code of the mail is spent too, and the link
	// is used.
	form := hidden(t, codePage)
	form.Set("code", code)
	if p := b.post("/signin/code", form); p.Status != http.StatusGone {
		t.Fatalf("the code after the link: %d\n%s", p.Status, p.Body)
	}
	if r := e.inst.verify(t, "v1", email, "app", code); r.Status != 401 {
		t.Fatalf("the code at the API after the link: %d", r.Status)
	}
	if p := b.get(link); p.Status != http.StatusGone || !strings.Contains(p.Body, "expired or was already used") {
		t.Fatalf("used link: %d\n%s", p.Status, p.Body)
	}
}

// The link on another device: it shows what is being approved and three
// numbers; a wrong pick refuses the sign-in for good; the right one
// approves, the approving device gets nothing it could sign in with, and
// the starting browser's waiting page finishes the sign-in.
func TestSignInLinkOtherDevice(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")

	for _, right := range []bool{false, true} {
		t.Run(fmt.Sprint("right=", right), func(t *testing.T) {
			b := newBrowser(t, iss, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/141.0 Safari/537.36")
			phone := newBrowser(t, iss, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1")
			email := uniqueEmail("other")
			f := newFlow()
			n := len(e.smtp.Messages())
			toCodePage(t, b, r.authURL(f), email)
			_, link := signInMail(t, e.smtp, email, n)
			wait := b.get(iss + "/signin/wait?f=" + flowOf(link))
			m := numberRE.FindStringSubmatch(wait.Body)
			if wait.Status != 200 || m == nil || !strings.Contains(wait.Body, `http-equiv="refresh"`) {
				t.Fatalf("wait page: %d\n%s", wait.Status, wait.Body)
			}
			number := m[1]
			p := phone.get(link)
			if p.Status != 200 || !strings.Contains(p.Body, "Chrome / Windows") || !strings.Contains(p.Body, "Example App") {
				t.Fatalf("approval page: %d\n%s", p.Status, p.Body)
			}
			picks := pickRE.FindAllStringSubmatch(p.Body, -1)
			if len(picks) != 3 {
				t.Fatalf("%d numbers offered", len(picks))
			}
			pick := ""
			for _, pk := range picks {
				if (pk[1] == number) == right {
					pick = pk[1]
					break
				}
			}
			form := hidden(t, p)
			form.Set("pick", pick)
			p = phone.post("/signin/link", form)
			if !right {
				if p.Status != http.StatusForbidden {
					t.Fatalf("wrong number: %d\n%s", p.Status, p.Body)
				}
				if w := b.get(iss + "/signin/wait?f=" + form.Get("f")); w.Status != http.StatusForbidden {
					t.Fatalf("the waiting browser after a wrong number: %d %s", w.Status, w.Location)
				}
				return
			}
			if p.Status != 200 || strings.Contains(p.Body, "code=") || p.Location != "" {
				t.Fatalf("approval: %d %q\n%s", p.Status, p.Location, p.Body)
			}
			// The code page, reloaded, goes on as the waiting page does.
			w := b.get(iss + "/signin?f=" + form.Get("f"))
			if w.Status != http.StatusSeeOther {
				t.Fatalf("waiting browser after approval: %d\n%s", w.Status, w.Body)
			}
			idt, _, err := r.finish(t, w.Location, f)
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			if c := claimsOf(t, idt); c["email"] != email || fmt.Sprint(c["amr"]) != "[link]" {
				t.Fatalf("claims %v", c)
			}
		})
	}
}

// flowOf is the sign-in id a link names.
func flowOf(link string) string {
	u, _ := url.Parse(link)
	return u.Query().Get("f")
}

// jsonB64 decodes a JWT segment into v.
func jsonB64(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// What the RFCs refuse: a wrong redirect_uri is an error page, never a
// redirect; an authorization request error goes back with error, state and
// iss; a missing or wrong PKCE verifier and a replayed code are
// invalid_grant, and the replay revokes the first use's access token; a
// wrong client secret is 401 invalid_client; prompt=none is
// login_required.
func TestSignInRefusals(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")

	// A redirect_uri that is not registered (another host, a longer path):
	// a page, not a redirect.
	for _, bad := range []string{"https://evil.example/callback", "http://127.0.0.1/callback/x", "http://localhost/callback"} {
		q := url.Values{"client_id": {"app"}, "redirect_uri": {bad}, "response_type": {"code"}, "scope": {"openid"},
			"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}, "state": {"s"}}
		p := b.do(http.MethodGet, iss+"/oauth2/authorize?"+q.Encode(), nil)
		if p.Status != http.StatusBadRequest || p.Location != "" || !strings.Contains(p.Body, "redirect_uri") {
			t.Fatalf("redirect_uri %s: %d %q", bad, p.Status, p.Location)
		}
	}
	if p := b.do(http.MethodGet, iss+"/oauth2/authorize?client_id=nobody&redirect_uri=http://127.0.0.1/callback", nil); p.Status != 400 || p.Location != "" {
		t.Fatalf("unknown client: %d %q", p.Status, p.Location)
	}
	// Errors the client may hear: at its redirect URI, with state and iss.
	for _, tc := range []struct {
		name, want string
		edit       func(url.Values)
	}{
		{"no PKCE", "invalid_request", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }},
		{"plain PKCE", "invalid_request", func(q url.Values) { q.Set("code_challenge_method", "plain") }},
		{"token flow", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "token") }},
		{"no openid", "invalid_scope", func(q url.Values) { q.Set("scope", "email") }},
		{"prompt none", "login_required", func(q url.Values) { q.Set("prompt", "none") }},
		{"prompt none login", "invalid_request", func(q url.Values) { q.Set("prompt", "none login") }},
		{"repeated state", "invalid_request", func(q url.Values) { q.Add("state", "again") }},
	} {
		f := newFlow()
		r.wantAuthorizeError(t, b.do(http.MethodGet, r.editedAuthURL(f, tc.edit), nil), f, iss, tc.name, tc.want)
	}

	// A sign-in to its redirect, for the token endpoint's refusals.
	signIn := func(f flow) string {
		t.Helper()
		email := uniqueEmail("refuse")
		n := len(e.smtp.Messages())
		p := toCodePage(t, b, r.authURL(f), email)
		code, _ := signInMail(t, e.smtp, email, n)
		form := hidden(t, p)
		form.Set("code", code)
		p = b.post("/signin/code", form)
		if p.Status != http.StatusSeeOther {
			t.Fatalf("sign-in: %d\n%s", p.Status, p.Body)
		}
		u, _ := url.Parse(p.Location)
		return u.Query().Get("code")
	}
	token := func(form url.Values, basic bool) response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, iss+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth("app", rpSecret)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	}
	base := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1/callback"}, "code_verifier": {verifier}}
	}
	errOf := func(t *testing.T, r response) string {
		t.Helper()
		m := r.json(t)
		if _, ok := m["detail"]; ok {
			t.Fatalf("an OAuth error has error, not detail: %s", r.Body)
		}
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control %q", r.Header.Get("Cache-Control"))
		}
		s, _ := m["error"].(string)
		return s
	}

	if got := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, true); got.Status != 400 || errOf(t, got) != "unsupported_grant_type" {
		t.Fatalf("refresh_token grant: %d %s", got.Status, got.Body)
	}
	if got := token(url.Values{"code": {"x"}}, true); got.Status != 400 || errOf(t, got) != "invalid_request" {
		t.Fatalf("no grant_type: %d %s", got.Status, got.Body)
	}
	if got := token(url.Values{"grant_type": {"authorization_code", "authorization_code"}}, true); got.Status != 400 || errOf(t, got) != "invalid_request" {
		t.Fatalf("a repeated parameter: %d %s", got.Status, got.Body)
	}
	{
		req, _ := http.NewRequest(http.MethodPost, iss+"/oauth2/token", strings.NewReader("grant_type=authorization_code&code=x&redirect_uri=x&code_verifier=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "wrong-secret")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("client_secret_basic, wrong secret: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}

	f := newFlow()
	code := signIn(f)
	if got := token(base(code, ""), true); got.Status != 400 || errOf(t, got) != "invalid_grant" {
		t.Fatalf("no verifier: %d %s", got.Status, got.Body)
	}
	// That try burnt nothing (anyone who saw the code could make it): the
	// right verifier still redeems.
	if got := token(base(code, f.verifier), true); got.Status != 200 {
		t.Fatalf("after a refused try: %d %s", got.Status, got.Body)
	}

	f = newFlow()
	code = signIn(f)
	if got := token(base(code, oauth2.GenerateVerifier()), true); got.Status != 400 || errOf(t, got) != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %s", got.Status, got.Body)
	}

	f = newFlow()
	code = signIn(f)
	wrong := base(code, f.verifier)
	wrong.Set("client_id", "app")
	wrong.Set("client_secret", "not-the-secret")
	if got := token(wrong, false); got.Status != 401 || errOf(t, got) != "invalid_client" {
		t.Fatalf("wrong secret: %d %s", got.Status, got.Body)
	}
	// client_secret_post with the right secret.
	right := base(code, f.verifier)
	right.Set("client_id", "app")
	right.Set("client_secret", rpSecret)
	first := token(right, false)
	if first.Status != 200 {
		t.Fatalf("client_secret_post: %d %s", first.Status, first.Body)
	}
	at, _ := first.json(t)["access_token"].(string)
	userinfo := func() int {
		req, _ := http.NewRequest(http.MethodGet, iss+"/oauth2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := userinfo(); st != 200 {
		t.Fatalf("userinfo: %d", st)
	}
	// The replay: refused, and the first use's access token is revoked.
	if got := token(right, false); got.Status != 400 || errOf(t, got) != "invalid_grant" {
		t.Fatalf("replay: %d %s", got.Status, got.Body)
	}
	if st := userinfo(); st != 401 {
		t.Fatalf("userinfo after the replay: %d, want 401", st)
	}
	// A state that is not the client's own is the client's to refuse:
	// authd gives back exactly what it was sent.
	f = newFlow()
	_, _, err := r.finish(t, "http://127.0.0.1/callback?code=x&state=forged&iss="+url.QueryEscape(iss), f)
	if err == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("forged state: %v", err)
	}
}

// A public client asking for RS256: PKCE alone, no secret, and an ID
// token signed RS256 that go-oidc verifies from the published keys.
func TestSignInPublicClientRS256(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "spa", "", "https://spa.example.com/cb")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	email := uniqueEmail("spa")
	f := newFlow()
	n := len(e.smtp.Messages())
	p := toCodePage(t, b, r.authURL(f, oauth2.SetAuthURLParam("ui_locales", "de")), email)
	if !strings.Contains(p.Body, `lang="de"`) {
		t.Fatalf("ui_locales=de: the page is not German:\n%s", p.Body)
	}
	code, _ := signInMail(t, e.smtp, email, n)
	form := hidden(t, p)
	form.Set("code", code)
	p = b.post("/signin/code", form)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("code form: %d\n%s", p.Status, p.Body)
	}
	idt, tok, err := r.finish(t, p.Location, f)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if hdr := idTokenHeader(t, tok); hdr["alg"] != "RS256" || idt.Audience[0] != "spa" {
		t.Fatalf("alg %v aud %v", hdr["alg"], idt.Audience)
	}
}

// The pages' and endpoints' headers: the flow cookie SameSite=Lax,
// HttpOnly, scoped to /signin; a CSP without script whose form-action
// allows the client's redirect origin where a form ends in a redirect;
// no-store; the token endpoint reads forms only, is not behind the
// cross-origin protection, and answers CORS to registered origins only.
func TestSignInPagesHeaders(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1:40001/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	first := b.do(http.MethodGet, r.authURL(newFlow()), nil)
	cookie := first.Header.Get("Set-Cookie")
	for _, want := range []string{"authd_signin_", "Path=/signin", "HttpOnly", "SameSite=Lax", "Max-Age=900"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("flow cookie %q lacks %s", cookie, want)
		}
	}
	if first.Status != http.StatusOK || !strings.Contains(first.Body, `action="/signin/email"`) {
		t.Fatalf("authorize: %d %q", first.Status, first.Location)
	}
	email := uniqueEmail("headers")
	p := first
	csp := p.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'self';", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("email page CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(p.Body, "<script") || strings.Contains(p.Body, " style=") {
		t.Errorf("the page allows or carries script or inline style: %q", csp)
	}
	if p.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("page Cache-Control %q", p.Header.Get("Cache-Control"))
	}
	form := hidden(t, p)
	form.Set("email", email)
	p = b.post("/signin/email", form)
	if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://127.0.0.1:40001;") {
		t.Errorf("code page CSP %q does not allow the client's redirect origin", csp)
	}
	// A form token of another form, or none: refused, nothing sent.
	bad := hidden(t, p)
	bad.Set("csrf", "forged")
	bad.Set("code", "123456")
	if p := b.post("/signin/code", bad); p.Status != http.StatusForbidden {
		t.Errorf("forged form token: %d", p.Status)
	}
	// A cross-site POST of a page's form: refused.
	req, _ := http.NewRequest(http.MethodPost, iss+"/signin/code", strings.NewReader(hidden(t, p).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := b.c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site form post: %v %v", resp.StatusCode, err)
	}
	// The token endpoint: JSON is 415 with an OAuth body; a cross-site
	// browser request is not refused by the origin check (it answers
	// invalid_grant), and CORS goes to registered origins only.
	if got := post(t, iss+"/oauth2/token", "application/json", `{"grant_type":"authorization_code"}`); got.Status != 415 || got.json(t)["error"] != "invalid_request" {
		t.Errorf("JSON to the token endpoint: %d %s", got.Status, got.Body)
	}
	for origin, want := range map[string]string{"https://spa.example.com": "https://spa.example.com", "https://evil.example": ""} {
		req, _ := http.NewRequest(http.MethodPost, iss+"/oauth2/token", strings.NewReader("grant_type=authorization_code&code=x&redirect_uri=https://spa.example.com/cb&client_id=spa&code_verifier="+strings.Repeat("a", 43)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Access-Control-Allow-Origin") != want {
			t.Errorf("token from %s: %d, ACAO %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	// Discovery lists the flow, from AUTHD_ISSUER whatever the Host.
	d := get(t, iss+"/.well-known/openid-configuration", "Host", "evil.example").json(t)
	if d["authorization_endpoint"] != iss+"/oauth2/authorize" || fmt.Sprint(d["code_challenge_methods_supported"]) != "[S256]" ||
		fmt.Sprint(d["id_token_signing_alg_values_supported"]) != "[EdDSA RS256]" || d["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("discovery %v", d)
	}
}

// The limits of the API hold on the pages, as readable messages with the
// API's statuses: a second address within the per-IP budget's minute is
// 429 with Retry-After, said in the page's language. login_hint prefills
// the address; the mail speaks the page's language.
func TestSignInLimitsAndLanguage(t *testing.T) {
	e := startSignIn(t, map[string]string{"LIMIT_SEND_CODE_PER_IP": "1/m"})
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	email := uniqueEmail("limits")
	f := newFlow()
	p := b.get(r.authURL(f, oauth2.SetAuthURLParam("login_hint", email), oauth2.SetAuthURLParam("ui_locales", "fr")))
	if !strings.Contains(p.Body, `value="`+email+`"`) || !strings.Contains(p.Body, `lang="fr"`) {
		t.Fatalf("login_hint / ui_locales: %d\n%s", p.Status, p.Body)
	}
	n := len(e.smtp.Messages())
	form := hidden(t, p)
	form.Set("email", email)
	if p := b.post("/signin/email", form); p.Status != 200 {
		t.Fatalf("first address: %d %s", p.Status, p.Body)
	}
	msgs := e.smtp.Wait(t, n+1, 10*time.Second)
	if subj := msgs[len(msgs)-1].Subject; subj != "Se connecter à Example App" {
		t.Errorf("the mail's subject %q is not French", subj)
	}
	if link := linkRE.FindString(msgs[len(msgs)-1].Text); !strings.HasPrefix(link, iss+"/signin/link?") {
		t.Errorf("link %q is not built from AUTHD_ISSUER", link)
	}
	p = b.get(r.authURL(newFlow(), oauth2.SetAuthURLParam("ui_locales", "fr")))
	form = hidden(t, p)
	form.Set("email", uniqueEmail("limits2"))
	p = b.post("/signin/email", form)
	if p.Status != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" || !strings.Contains(p.Body, "Trop de tentatives") {
		t.Fatalf("over the limit: %d %q\n%s", p.Status, p.Header.Get("Retry-After"), p.Body)
	}
	form = hidden(t, p)
	form.Set("email", "not an address")
	if p := b.post("/signin/email", form); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, `role="alert"`) {
		t.Fatalf("a bad address: %d\n%s", p.Status, p.Body)
	}
}

// RP-Initiated Logout: a registered post_logout_redirect_uri gets the
// browser back with state; an unregistered one is a page, never a
// redirect; without one, a page says the user is signed out.
func TestSignInLogout(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	p := b.do(http.MethodGet, iss+"/oauth2/logout?client_id=app&state=s1&post_logout_redirect_uri="+url.QueryEscape("http://127.0.0.1/bye"), nil)
	if p.Status != http.StatusSeeOther || p.Location != "http://127.0.0.1/bye?state=s1" {
		t.Fatalf("registered: %d %q", p.Status, p.Location)
	}
	p = b.do(http.MethodGet, iss+"/oauth2/logout?client_id=app&post_logout_redirect_uri="+url.QueryEscape("https://evil.example/"), nil)
	if p.Status != http.StatusBadRequest || p.Location != "" {
		t.Fatalf("unregistered: %d %q", p.Status, p.Location)
	}
	p = b.do(http.MethodGet, iss+"/oauth2/logout", nil)
	if p.Status != 200 || !strings.Contains(p.Body, "signed out") {
		t.Fatalf("plain: %d\n%s", p.Status, p.Body)
	}
}

// A link whose code has expired is a page that says so, on GET already;
// nothing is counted.
func TestSignInLinkExpired(t *testing.T) {
	// Long enough for the mail to arrive under load (a mail whose code
	// has expired is not sent), short enough to wait out.
	const ttl = 4 * time.Second
	e := startSignIn(t, map[string]string{"OTP_EXPIRE_SECONDS": "4"})
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	email := uniqueEmail("expired")
	n := len(e.smtp.Messages())
	sent := time.Now()
	toCodePage(t, b, r.authURL(newFlow()), email)
	_, link := signInMail(t, e.smtp, email, n)
	if p := b.get(link); p.Status != 200 {
		t.Fatalf("the link before its code expired: %d", p.Status)
	}
	time.Sleep(time.Until(sent.Add(ttl + 200*time.Millisecond))) // the code's own lifetime, on authd's clock
	if p := b.get(link); p.Status != http.StatusGone || !strings.Contains(p.Body, "expired") {
		t.Fatalf("expired link: %d\n%s", p.Status, p.Body)
	}
}

// Starting sign-ins is limited per client IP (every one is a record until
// it expires): over LIMIT_VERIFY_CODE_PER_IP's rate, a readable 429 page.
func TestSignInStartLimited(t *testing.T) {
	e := startSignIn(t, map[string]string{"LIMIT_VERIFY_CODE_PER_IP": "2/m"})
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	// HEADs start nothing and count nothing.
	for range 5 {
		if p := b.do(http.MethodHead, r.authURL(newFlow()), nil); p.Status != 200 || p.Header.Get("Set-Cookie") != "" {
			t.Fatalf("HEAD: %d %q", p.Status, p.Header.Get("Set-Cookie"))
		}
	}
	for i := range 2 {
		if p := b.do(http.MethodGet, r.authURL(newFlow()), nil); p.Status != 200 {
			t.Fatalf("sign-in %d: %d", i, p.Status)
		}
	}
	p := b.do(http.MethodGet, r.authURL(newFlow()), nil)
	if p.Status != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" || p.Location != "" || !strings.Contains(p.Body, "Too many attempts") {
		t.Fatalf("third: %d %q %q\n%s", p.Status, p.Header.Get("Retry-After"), p.Location, p.Body)
	}
}

// `authd clients secret` makes a 32-byte secret and prints the SHA-256
// the registry takes.
func TestClientsSecretCommand(t *testing.T) {
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"clients", "secret"}, func(string) string { return "" }, nil, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var secret, sum string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "client_secret":
			secret = v
		case "client_secret_sha256":
			sum = v
		}
	}
	got := sha256.Sum256([]byte(secret))
	if len(secret) != 64 || hex.EncodeToString(got[:]) != sum {
		t.Fatalf("output %q", out.String())
	}
}

// The embedded mode (SQLite, codes and sign-ins in memory, mail to the
// log): the hosted sign-in works there too, the code read from the log.
func TestSignInDevelopmentMode(t *testing.T) {
	projects := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(projects, []byte("- id: app\n  display_name: Dev App\n  redirect_uris: [http://127.0.0.1/callback]\n"), 0o600)
	port := strconv.Itoa(freePort(t))
	iss := "http://127.0.0.1:" + port
	inst := start(t, map[string]string{"PORT": port, "AUTHD_ISSUER": iss, "PROJECTS_FILE": projects})
	r := newRP(t, iss, "app", "", "http://127.0.0.1:40002/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	f := newFlow()
	p := toCodePage(t, b, r.authURL(f), "dev@example.com")
	form := hidden(t, p)
	form.Set("code", waitLogCode(t, inst, "dev@example.com"))
	p = b.post("/signin/code", form)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("code: %d\n%s", p.Status, p.Body)
	}
	idt, _, err := r.finish(t, p.Location, f)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if c := claimsOf(t, idt); c["email"] != "dev@example.com" {
		t.Fatalf("claims %v", c)
	}
	if !strings.Contains(inst.Logs.String(), `link="`+iss+"/signin/link?") {
		t.Fatal("the development mail's log line has no link")
	}
}

// On a Redis Cluster, behind a balancer: the sign-in starts on one
// instance, the code is typed on another, and the code redeems at the
// first; its replay at the second is refused.
func TestSignInOnClusterTwoInstances(t *testing.T) {
	e := startSignInOn(t, clusterProduction(t), nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	other := cloneEnv(e.inst.Env)
	other["PORT"], other["METRICS_ADDR"] = strconv.Itoa(freePort(t)), "127.0.0.1:0"
	second := start(t, other)
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	email := uniqueEmail("cluster")
	f := newFlow()
	n := len(e.smtp.Messages())
	p := toCodePage(t, b, r.authURL(f), email)
	code, _ := signInMail(t, e.smtp, email, n)
	form := hidden(t, p)
	form.Set("code", code)
	p = b.do(http.MethodPost, second.URL+"/signin/code", form)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("the code at the second instance: %d\n%s", p.Status, p.Body)
	}
	idt, _, err := r.finish(t, p.Location, f)
	if err != nil || claimsOf(t, idt)["email"] != email {
		t.Fatalf("client: %v", err)
	}
	u, _ := url.Parse(p.Location)
	replay := post(t, second.URL+"/oauth2/token", "application/x-www-form-urlencoded", url.Values{"grant_type": {"authorization_code"},
		"code": {u.Query().Get("code")}, "redirect_uri": {"http://127.0.0.1/callback"}, "code_verifier": {f.verifier},
		"client_id": {"app"}, "client_secret": {rpSecret}}.Encode())
	if replay.Status != 400 || replay.json(t)["error"] != "invalid_grant" {
		t.Fatalf("replay at the second instance: %d %s", replay.Status, replay.Body)
	}
}

// The sign-in counts in the metrics as the API does: its mail as a code
// sent, its typed code as a verification, its route and status.
func TestSignInMetrics(t *testing.T) {
	mport := freePort(t)
	e := startSignIn(t, map[string]string{"METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(mport)})
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	email := uniqueEmail("metrics")
	n := len(e.smtp.Messages())
	p := toCodePage(t, b, r.authURL(newFlow()), email)
	code, _ := signInMail(t, e.smtp, email, n)
	form := hidden(t, p)
	form.Set("code", wrongCode(code, 5))
	b.post("/signin/code", form)
	form.Set("code", code)
	if p := b.post("/signin/code", form); p.Status != http.StatusSeeOther {
		t.Fatalf("code: %d", p.Status)
	}
	body := getText(t, "http://127.0.0.1:"+strconv.Itoa(mport)+"/metrics", 200)
	for _, want := range []string{
		`authd_codes_sent_total 1`,
		`authd_verifications_total{outcome="success"} 1`,
		`authd_verifications_total{outcome="wrong"} 1`,
		`authd_http_requests_total{route="POST /signin/code",status="303"} 1`,
		`authd_http_requests_total{route="POST /signin/code",status="401"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(body, "authd_"))
		}
	}
}
