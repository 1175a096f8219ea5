package main

import (
	"net/http"
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
