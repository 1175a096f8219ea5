package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Fixes of the outside review of the hosted sign-in, end to end on the
// real binary (real Redis, PostgreSQL, SMTP).

// A hosted sign-in's mailed code is no API code: /api/v1 and /api/v2
// verify-code with project_id=<client> refuse it (401, as any wrong code),
// so it cannot skip the flow and its number matching; the flow still
// takes it afterwards.
func TestSignInCodeNotForAPI(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1:45678/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
	email := uniqueEmail("apiskip")
	f := newFlow()
	n := len(e.smtp.Messages())
	p := toCodePage(t, b, r.authURL(f), email)
	code, _ := signInMail(t, e.smtp, email, n)
	for _, v := range []string{"v1", "v2"} {
		if res := e.inst.verify(t, v, email, "app", code); res.Status != http.StatusUnauthorized {
			t.Fatalf("%s verify-code took the sign-in's code: %d %s", v, res.Status, res.Body)
		}
	}
	form := hidden(t, p)
	form.Set("code", code)
	p = b.post("/signin/code", form)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Location, "http://127.0.0.1:45678/callback?") {
		t.Fatalf("code form after the API's tries: %d %q\n%s", p.Status, p.Location, p.Body)
	}
	if _, _, err := r.finish(t, p.Location, f); err != nil {
		t.Fatalf("client: %v", err)
	}
}

// A native or single page app on a loopback port: its redirect URI
// (http://127.0.0.1/callback) matches on any port, and so does its origin
// at the token and userinfo endpoints; another host or port 0 does not.
func TestSignInLoopbackCORS(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	for origin, want := range map[string]string{
		"http://127.0.0.1:5555": "http://127.0.0.1:5555", "http://127.0.0.1": "http://127.0.0.1",
		"http://127.0.0.2:5555": "", "http://127.0.0.1:0": "", "https://evil.example": "",
	} {
		for _, path := range []string{"/oauth2/token", "/oauth2/userinfo"} {
			req, _ := http.NewRequest(http.MethodOptions, iss+path, nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
				t.Errorf("preflight of %s from %s: %d, ACAO %q, want %q", path, origin, resp.StatusCode, got, want)
			}
		}
	}
}

// Approved on another device, the waiting browser collects the sign-in
// idempotently: HEAD, GET /signin/wait and GET /signin, repeated before the
// client has the code, answer the same redirect (one code issued); once the
// client redeemed it, the pages say the sign-in is over.
func TestSignInWaitIdempotent(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/141.0 Safari/537.36")
	phone := newBrowser(t, iss, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1")
	email := uniqueEmail("idem")
	f := newFlow()
	n := len(e.smtp.Messages())
	toCodePage(t, b, r.authURL(f), email)
	_, link := signInMail(t, e.smtp, email, n)
	id := flowOf(link)
	wait := b.get(iss + "/signin/wait?f=" + id)
	m := numberRE.FindStringSubmatch(wait.Body)
	if m == nil {
		t.Fatalf("wait page: %d\n%s", wait.Status, wait.Body)
	}
	p := phone.get(link)
	form := hidden(t, p)
	form.Set("pick", m[1])
	if p = phone.post("/signin/link", form); p.Status != 200 {
		t.Fatalf("approval: %d\n%s", p.Status, p.Body)
	}
	first := b.do(http.MethodHead, iss+"/signin/wait?f="+id, nil)
	if first.Status != http.StatusSeeOther || !strings.HasPrefix(first.Location, "http://127.0.0.1/callback?") {
		t.Fatalf("HEAD after approval: %d %q", first.Status, first.Location)
	}
	for _, path := range []string{"/signin/wait?f=", "/signin/wait?f=", "/signin?f="} {
		if again := b.get(iss + path + id); again.Status != http.StatusSeeOther || again.Location != first.Location {
			t.Fatalf("GET %s again: %d %q, want %q", path, again.Status, again.Location, first.Location)
		}
	}
	if other := phone.get(iss + "/signin/wait?f=" + id); other.Location != "" {
		t.Fatalf("another browser collected: %d %q", other.Status, other.Location)
	}
	if _, _, err := r.finish(t, first.Location, f); err != nil {
		t.Fatalf("client: %v", err)
	}
	if after := b.get(iss + "/signin/wait?f=" + id); after.Location != "" || after.Status != http.StatusGone {
		t.Fatalf("after the redemption: %d %q", after.Status, after.Location)
	}
}

// Request objects are not supported (OIDC Core §6: request_not_supported,
// request_uri_not_supported), nor any response_mode but query: errors at
// the redirect URI, with state and iss.
func TestSignInRequestObjectsRefused(t *testing.T) {
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	r := newRP(t, iss, "app", rpSecret, "http://127.0.0.1/callback")
	b := newBrowser(t, iss, "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
	for _, tc := range []struct {
		name, want string
		edit       func(url.Values)
	}{
		{"request", "request_not_supported", func(q url.Values) { q.Set("request", "eyJhbGciOiJub25lIn0.e30.") }},
		{"request_uri", "request_uri_not_supported", func(q url.Values) { q.Set("request_uri", "https://app.example.com/r/1") }},
		{"fragment", "invalid_request", func(q url.Values) { q.Set("response_mode", "fragment") }},
		{"form_post", "invalid_request", func(q url.Values) { q.Set("response_mode", "form_post") }},
	} {
		f := newFlow()
		r.wantAuthorizeError(t, b.do(http.MethodGet, r.editedAuthURL(f, tc.edit), nil), f, iss, tc.name, tc.want)
	}
	query := r.editedAuthURL(newFlow(), func(q url.Values) { q.Set("response_mode", "query") })
	if p := b.get(query); p.Status != 200 {
		t.Fatalf("response_mode=query: %d %q", p.Status, p.Location)
	}
}

// OIDC Discovery 1.0 §3: id_token_signing_alg_values_supported MUST list
// RS256. With the hosted sign-in on, it is listed, and an RSA key is
// published, though no client of the registry asks for RS256; with
// TOKEN_KEY_FILE, the sign-in is not in discovery.
func TestSignInDiscoveryListsRS256(t *testing.T) {
	env := newProduction(t)
	projects := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(projects, []byte(`
- id: app
  display_name: Example App
  redirect_uris: [http://127.0.0.1/callback]
`), 0o600)
	port := freePort(t)
	env.Env["PORT"] = strconv.Itoa(port)
	env.Env["AUTHD_ISSUER"] = "http://127.0.0.1:" + strconv.Itoa(port)
	env.Env["PROJECTS_FILE"] = projects
	inst := start(t, env.Env)
	iss := env.Env["AUTHD_ISSUER"]
	d := get(t, iss+"/.well-known/openid-configuration").json(t)
	if fmt.Sprint(d["id_token_signing_alg_values_supported"]) != "[EdDSA RS256]" || d["authorization_endpoint"] == nil {
		t.Fatalf("discovery without an RS256 client: %v", d)
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(get(t, inst.URL+"/.well-known/jwks.json").Body, &jwks); err != nil {
		t.Fatal(err)
	}
	algs := map[string]bool{}
	for _, k := range jwks.Keys {
		algs[fmt.Sprint(k["alg"])] = true
	}
	if !algs["RS256"] || !algs["EdDSA"] {
		t.Fatalf("JWKS publishes %v, want EdDSA and RS256 keys", algs)
	}
	// With TOKEN_KEY_FILE there is no RSA key: discovery does not offer
	// the hosted sign-in, rather than list RS256 it cannot sign.
	path, _ := keyFile(t)
	file := start(t, map[string]string{"AUTHD_ISSUER": "https://auth.example.com", "TOKEN_KEY_FILE": path})
	d = get(t, file.URL+"/.well-known/openid-configuration").json(t)
	if d["authorization_endpoint"] != nil || fmt.Sprint(d["id_token_signing_alg_values_supported"]) != "[EdDSA]" {
		t.Fatalf("discovery with TOKEN_KEY_FILE: %v", d)
	}
}
