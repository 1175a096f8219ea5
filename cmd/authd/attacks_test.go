package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/smtptest"
)

// One test per attack (issue 4). Each checks the outcome and that nothing
// leaked — no code, no secret — in an answer or the log.

// leakCheck fails t if any answer or the log holds a code or a secret.
func leakCheck(t *testing.T, inst *instance, bodies []string, secrets ...string) {
	t.Helper()
	logs := inst.Logs.String()
	secrets = append(secrets, inst.Env["SECRET_KEY"], inst.Env["AUTHD_MASTER_KEY"])
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a code or secret")
		}
		for _, b := range bodies {
			if strings.Contains(b, s) {
				t.Errorf("an answer holds a code or secret: %s", b)
			}
		}
	}
}

// postFrom sends a POST whose X-Forwarded-For claims client.
func postFrom(t *testing.T, url, client string, body any) response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if client != "" {
		req.Header.Set("X-Forwarded-For", client)
	}
	resp, err := client_.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&buf)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: []byte(buf.String())}
}

var client_ = client

// Brute force through many IPs on one address: the per-address failure
// budget holds whatever the IP, and each code dies after 5 tries.
func TestAttackBruteForceThroughManyIPs(t *testing.T) {
	env := newProduction(t)
	env.Env["TRUSTED_PROXIES"] = "127.0.0.1/32"
	env.Env["OTP_RESEND_SECONDS"] = "0"
	inst := start(t, env.Env)
	email := uniqueEmail("victim")
	var codes, bodies []string
	wrong, limited := 0, 0
	for round := range 3 {
		code := inst.sendAndRead(t, env.SMTP, email, "shop")
		codes = append(codes, code)
		for i := range 10 {
			ip := fmt.Sprintf("198.51.%d.%d", round, i+1) // a fresh IP per guess
			r := postFrom(t, inst.URL+"/api/v1/auth/verify-code", ip, map[string]string{"email": email, "project_id": "shop", "code": wrongCode(code, round*10+i)})
			bodies = append(bodies, string(r.Body))
			switch r.Status {
			case 401:
				wrong++
			case 429:
				limited++
				if r.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
			default:
				t.Fatalf("guess: %d %s", r.Status, r.Body)
			}
		}
	}
	// 30 guesses from 30 IPs. Code 1: 5 count, then it is dead (5 more
	// 401s that count nowhere). Code 2: 5 count — the budget of 10 is
	// spent — then 429s. Code 3: all 429. Exactly 10 reached a live code.
	if wrong != 15 || limited != 15 {
		t.Fatalf("30 guesses from 30 IPs on one address: %d wrong, %d limited; want 15 and 15", wrong, limited)
	}
	// The last code is live but the budget is spent: even it is refused.
	r := postFrom(t, inst.URL+"/api/v1/auth/verify-code", "203.0.113.99", map[string]string{"email": email, "project_id": "shop", "code": codes[len(codes)-1]})
	if r.Status != 429 {
		t.Fatalf("right code after the budget was spent: %d", r.Status)
	}
	leakCheck(t, inst, bodies, codes...)
}

// Spraying many addresses from one IP: the send limit per client IP stops
// it after 10 a minute, whatever the addresses.
func TestAttackSprayManyAddressesFromOneIP(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	ok := 0
	var bodies []string
	for i := range 25 {
		r := inst.send(t, "v1", uniqueEmail(fmt.Sprintf("spray%d", i)), "shop")
		bodies = append(bodies, string(r.Body))
		switch r.Status {
		case 200:
			ok++
		case 429:
			if r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit-Remaining") != "0" {
				t.Errorf("429 headers: %v", r.Header)
			}
		default:
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	if ok != 10 {
		t.Fatalf("%d of 25 sprayed sends passed, want 10", ok)
	}
	env.SMTP.Wait(t, 10, 10*time.Second)
	if n := len(env.SMTP.Messages()); n != 10 {
		t.Fatalf("%d mails for 10 accepted sends", n)
	}
	leakCheck(t, inst, bodies)
}

// X-Forwarded-For spoofing from an untrusted peer: ignored, the peer is
// limited.
func TestAttackXForwardedForSpoofing(t *testing.T) {
	env := newProduction(t) // no TRUSTED_PROXIES
	inst := start(t, env.Env)
	ok := 0
	for i := range 15 {
		r := postFrom(t, inst.URL+"/api/v1/auth/send-code", fmt.Sprintf("192.0.2.%d", i+1), map[string]string{"email": uniqueEmail("spoof"), "project_id": "shop"})
		if r.Status == 200 {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("15 sends with forged X-Forwarded-For from one peer: %d passed, want 10", ok)
	}
	leakCheck(t, inst, nil)
}

// Behind a trusted proxy chain each client is limited on its own, and the
// forged left part of the header does not help.
func TestAttackTrustedProxyChain(t *testing.T) {
	env := newProduction(t)
	env.Env["TRUSTED_PROXIES"] = "127.0.0.1, 10.0.0.0/8"
	inst := start(t, env.Env)
	passed := map[string]int{}
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		for i := range 12 {
			// The client forges a different address on the left each
			// time; the proxies (10.x) append what they saw.
			xff := fmt.Sprintf("203.0.113.%d, %s, 10.1.1.1", i+1, client)
			r := postFrom(t, inst.URL+"/api/v1/auth/send-code", xff, map[string]string{"email": uniqueEmail("chain"), "project_id": "shop"})
			if r.Status == 200 {
				passed[client]++
			}
		}
	}
	if passed["198.51.100.1"] != 10 || passed["198.51.100.2"] != 10 {
		t.Fatalf("per-client passes behind the proxies: %v, want 10 each", passed)
	}
	leakCheck(t, inst, nil)
}

// A code verified for another project is refused: codes are bound to
// their project.
func TestAttackCodeForAnotherProject(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	email := uniqueEmail("cross")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	cross := inst.verify(t, "v1", email, "bank", code)
	if cross.Status != 401 {
		t.Fatalf("shop's code at bank: %d", cross.Status)
	}
	ok := inst.verify(t, "v1", email, "shop", code)
	if ok.Status != 200 {
		t.Fatalf("shop's code at shop afterwards: %d", ok.Status)
	}
	var p authd.Proof
	json.Unmarshal(ok.Body, &p)
	leakCheck(t, inst, []string{string(cross.Body)}, code)
	if strings.Contains(inst.Logs.String(), p.Signature) {
		t.Error("the log holds a signature")
	}
}

// Header injection via the address or project_id: refused before anything
// is stored; with a registry, the mail's subject holds the display name
// only.
func TestAttackHeaderInjection(t *testing.T) {
	env := newProduction(t)
	projects := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(projects, []byte("- id: shop\n  display_name: Example Shop\n"), 0o600)
	env.Env["PROJECTS_FILE"] = projects
	inst := start(t, env.Env)
	for _, body := range []string{
		`{"email":"a@example.com\r\nBcc: evil@example.org","project_id":"shop"}`,
		`{"email":"a@example.com","project_id":"shop\r\nBcc: evil@example.org"}`,
		`{"email":"a@example.com\nSubject: x","project_id":"shop"}`,
		`{"email":"\"a\r\nb\"@example.com","project_id":"shop"}`,
	} {
		if r := post(t, inst.URL+"/api/v1/auth/send-code", "application/json", body); r.Status != 422 || strings.Contains(string(r.Body), "evil") {
			t.Fatalf("%s: %d %s", body, r.Status, r.Body)
		}
	}
	email := uniqueEmail("subject")
	inst.sendAndRead(t, env.SMTP, email, "shop")
	m := env.SMTP.Messages()[0]
	if m.Subject != "Your verification code for Example Shop" || len(m.To) != 1 {
		t.Fatalf("subject %q, recipients %v", m.Subject, m.To)
	}
	for _, bcc := range []string{"Bcc", "Cc"} {
		if m.Header.Get(bcc) != "" {
			t.Fatalf("%s header in the mail", bcc)
		}
	}
	leakCheck(t, inst, nil, smtptest.CodeFrom(m))
}

// Oversized and malformed bodies: 413 / 422 quickly, the server unharmed.
func TestAttackOversizedAndMalformedBodies(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	huge := `{"email":"a@example.com","project_id":"shop","x":"` + strings.Repeat("A", 10<<20) + `"}`
	if r := post(t, inst.URL+"/api/v1/auth/send-code", "application/json", huge); r.Status != 413 {
		t.Fatalf("10 MiB body: %d", r.Status)
	}
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	for _, b := range []string{deep, `{"email":`, "\x00\x01\x02", `{"email":"a@example.com","project_id":"shop"}garbage`} {
		if r := post(t, inst.URL+"/api/v1/auth/send-code", "application/json", b); r.Status != 422 {
			t.Fatalf("malformed %q: %d %s", b[:min(len(b), 20)], r.Status, r.Body)
		}
	}
	if r := inst.send(t, "v1", uniqueEmail("after"), "shop"); r.Status != 200 {
		t.Fatalf("a good request afterwards: %d", r.Status)
	}
	if len(env.SMTP.Messages()) > 1 {
		t.Fatal("a malformed request sent mail")
	}
	leakCheck(t, inst, nil)
}

// A slow client that stalls mid-header is cut off within 10 s
// (slowloris); others are served meanwhile.
func TestAttackSlowClient(t *testing.T) {
	t.Parallel()
	inst := start(t, map[string]string{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(inst.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	fmt.Fprintf(conn, "POST /api/v1/auth/send-code HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	if r := inst.send(t, "v1", uniqueEmail("meanwhile"), "shop"); r.Status != 200 {
		t.Fatalf("another client while one stalls: %d", r.Status)
	}
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			break // the server closed the connection (or answered and closed)
		}
	}
	if d := time.Since(began); d > 11*time.Second {
		t.Fatalf("a stalled header held its connection for %v", d)
	}
	leakCheck(t, inst, nil)
}

// A project registry refuses unknown projects with a clear 422, sends
// nothing, and answers CORS only for its allowed origins.
func TestProjectRegistry(t *testing.T) {
	env := newProduction(t)
	projects := filepath.Join(t.TempDir(), "projects.json")
	os.WriteFile(projects, []byte(`[{"id":"shop","display_name":"Example Shop","allowed_origins":["https://shop.example.com"],"limits":{"mails_per_project":"2/h"}}]`), 0o600)
	env.Env["PROJECTS_FILE"] = projects
	inst := start(t, env.Env)
	r := inst.send(t, "v1", uniqueEmail("typo"), "shpo")
	if r.Status != 422 || !strings.Contains(string(r.Body), "Unknown project_id") || !strings.Contains(string(r.Body), `"project_id"`) {
		t.Fatalf("unknown project: %d %s", r.Status, r.Body)
	}
	// The project's own limit: 2 mails an hour.
	ok := 0
	for range 4 {
		if inst.send(t, "v1", uniqueEmail("limit"), "shop").Status == 200 {
			ok++
		}
	}
	if ok != 2 {
		t.Fatalf("project limit 2/h: %d passed", ok)
	}
	env.SMTP.Wait(t, 2, 10*time.Second)
	if n := len(env.SMTP.Messages()); n != 2 {
		t.Fatalf("%d mails, want 2", n)
	}

	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, inst.URL+"/api/v1/auth/send-code", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := preflight("https://shop.example.com"); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Fatalf("allowed origin preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight("https://evil.example.org"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS granted to an unlisted origin")
	}
}

// Security headers on every answer, and RateLimit-* on the auth
// endpoints' answers, errors included.
func TestSecurityAndRateLimitHeaders(t *testing.T) {
	inst := start(t, map[string]string{})
	r := inst.verify(t, "v1", uniqueEmail("headers"), "shop", "123456")
	if r.Status != 401 {
		t.Fatalf("%d", r.Status)
	}
	for h, want := range map[string]string{
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer", "RateLimit-Limit": "60", "RateLimit-Remaining": "59",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", r.Header.Get("Content-Security-Policy"))
	}
	if resp, err := http.Get(inst.URL + "/api/v1/health"); err != nil || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("health lacks the security headers")
	}
}

// The resend cooldown answers 429 with when to retry, never a silent 200.
// Both code stores: the client-IP limit's headers ride on the refusal too.
func TestCooldownAnswers429(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testCooldown(t, start(t, map[string]string{})) })
	t.Run("redis", func(t *testing.T) { testCooldown(t, start(t, newProduction(t).Env)) })
}

func testCooldown(t *testing.T, inst *instance) {
	email := uniqueEmail("cool")
	if r := inst.send(t, "v2", email, "shop"); r.Status != 200 {
		t.Fatalf("first send: %d", r.Status)
	}
	r := inst.send(t, "v2", email, "shop")
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second send within the cooldown: %d %v", r.Status, r.Header)
	}
	if ra := r.Header.Get("Retry-After"); ra != "60" && ra != "59" {
		t.Fatalf("Retry-After %s, want about 60", ra)
	}
	// One send counted of 10 a minute; the refused one is not counted.
	if r.Header.Get("RateLimit-Limit") != "10" || r.Header.Get("RateLimit-Remaining") != "9" {
		t.Fatalf("RateLimit headers on the cooldown's 429: %v", r.Header)
	}
	// Another project is another cooldown.
	if r := inst.send(t, "v2", email, "other"); r.Status != 200 {
		t.Fatalf("another project: %d", r.Status)
	}
}

// Enumeration: send-code answers alike for an address with an account and
// one without, and never reads the user table (it answers even with the
// table gone), so its latency cannot depend on the account either.
// verify-code's failures share one body.
func TestAttackEnumeration(t *testing.T) {
	env := newProduction(t)
	env.Env["LIMIT_SEND_CODE_PER_IP"] = "0"
	inst := start(t, env.Env)
	known := uniqueEmail("known")
	code := inst.sendAndRead(t, env.SMTP, known, "shop")
	if r := inst.verify(t, "v1", known, "shop", code); r.Status != 200 {
		t.Fatalf("verify: %d", r.Status)
	}
	restore := hideUsers(t, env.DB)
	a := inst.send(t, "v1", known, "other")
	b := inst.send(t, "v1", uniqueEmail("unknown"), "other")
	if a.Status != 200 || b.Status != 200 || string(a.Body) != string(b.Body) {
		t.Fatalf("send-code differs by account: %d %s / %d %s", a.Status, a.Body, b.Status, b.Body)
	}
	restore()

	// Wrong, never sent, other project: one body.
	bodies := map[string]bool{}
	for _, r := range []response{
		inst.verify(t, "v1", known, "shop", "000000"),
		inst.verify(t, "v1", uniqueEmail("never"), "shop", "000000"),
		inst.verify(t, "v1", known, "nosuchproject", "000000"),
	} {
		if r.Status != 401 {
			t.Fatalf("failed verify: %d", r.Status)
		}
		bodies[string(r.Body)] = true
	}
	if len(bodies) != 1 {
		t.Fatalf("failed verifications tell reasons apart: %v", bodies)
	}
	leakCheck(t, inst, []string{string(a.Body), string(b.Body)}, code)
}
