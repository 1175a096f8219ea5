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
