package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

// The original's defects, each shown absent over HTTP against real
// PostgreSQL, Redis and SMTP.

// The original's limiter counted all requests of one second as one.
func TestDefectLimiterCountsEveryRequest(t *testing.T) {
	env := newProduction(t)
	env.Env["LIMIT_SEND_CODE_PER_IP"] = "10/m"
	inst := start(t, env.Env)
	const n = 60
	statuses := make([]int, n)
	retry := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := inst.send(t, "v1", uniqueEmail("burst"), "shop")
			statuses[i], retry[i] = r.Status, r.Header.Get("Retry-After")
		})
	}
	wg.Wait()
	ok, limited := 0, 0
	for i, s := range statuses {
		switch s {
		case 200:
			ok++
		case 429:
			limited++
			if retry[i] == "" {
				t.Errorf("429 without Retry-After")
			}
		default:
			t.Errorf("status %d", s)
		}
	}
	if ok != 10 || limited != n-10 {
		t.Fatalf("%d concurrent sends under 10/m: %d passed, %d limited; want exactly 10 passed", n, ok, limited)
	}
}

// One code verified many times when the verifies were concurrent.
func TestDefectCodeVerifiesOnceUnderConcurrency(t *testing.T) {
	env := newProduction(t)
	env.Env["LIMIT_VERIFY_CODE_PER_IP"] = "0"
	inst := start(t, env.Env)
	email := uniqueEmail("once")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	const n = 100
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { statuses[i] = inst.verify(t, "v1", email, "shop", code).Status })
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		} else if s != 401 {
			t.Errorf("status %d", s)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent verifies of the right code: %d succeeded, want exactly 1", n, ok)
	}
	// Replay after success.
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 401 || r.detail() != "Invalid or expired verification code" {
		t.Fatalf("replay: %d %s", r.Status, r.Body)
	}
}

// Concurrent first verifies of a new address returned 500.
func TestDefectConcurrentFirstVerifies(t *testing.T) {
	env := newProduction(t)
	env.Env["LIMIT_CODES_PER_ADDRESS"] = "0"
	env.Env["LIMIT_SEND_CODE_PER_IP"] = "0"
	inst := start(t, env.Env)
	email := uniqueEmail("first")
	const n = 20
	codes := make([]string, n)
	for i := range n {
		codes[i] = inst.sendAndRead(t, env.SMTP, email, fmt.Sprintf("app%d", i))
	}
	ids := make([]string, n)
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := inst.verify(t, "v1", email, fmt.Sprintf("app%d", i), codes[i])
			statuses[i] = r.Status
			var p authd.Proof
			json.Unmarshal(r.Body, &p)
			ids[i] = p.AuthUserID
		})
	}
	wg.Wait()
	for i := range n {
		if statuses[i] != 200 || ids[i] != ids[0] {
			t.Fatalf("concurrent first verifies: status %d id %q (first id %q)", statuses[i], ids[i], ids[0])
		}
	}
}

// Wrong guesses sent concurrently with the right code bypassed the 5-try
// limit.
func TestDefectConcurrentGuessesRespectAttemptLimit(t *testing.T) {
	env := newProduction(t)
	env.Env["LIMIT_VERIFY_CODE_PER_IP"] = "0"
	env.Env["LIMIT_FAILURES_PER_ADDRESS"] = "0"
	inst := start(t, env.Env)
	email := uniqueEmail("guess")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if r := inst.verify(t, "v1", email, "shop", wrongCode(code, i)); r.Status != 401 {
				t.Errorf("wrong guess: %d", r.Status)
			}
		})
	}
	wg.Wait()
	// 50 wrong tries, 5 allowed: the code is dead, the right one fails too.
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 401 {
		t.Fatalf("right code after %d concurrent wrong guesses: %d, want 401 (code burned after 5)", n, r.Status)
	}
}

// A new send-code reset the wrong-try counter, making guessing unlimited.
func TestDefectNewCodeDoesNotResetGuessing(t *testing.T) {
	env := newProduction(t)
	env.Env["OTP_RESEND_SECONDS"] = "0"
	env.Env["LIMIT_CODES_PER_ADDRESS"] = "0"
	env.Env["LIMIT_VERIFY_CODE_PER_IP"] = "0"
	inst := start(t, env.Env)
	email := uniqueEmail("reset")
	// Default budget: 10 wrong tries per address per hour, across codes.
	// Each code dies after 5, so two codes exhaust it.
	for round := range 2 {
		code := inst.sendAndRead(t, env.SMTP, email, "shop")
		for i := range 5 {
			if r := inst.verify(t, "v1", email, "shop", wrongCode(code, i)); r.Status != 401 {
				t.Fatalf("round %d wrong try %d: %d", round, i, r.Status)
			}
		}
	}
	code := inst.sendAndRead(t, env.SMTP, email, "other-project")
	r := inst.verify(t, "v1", email, "other-project", code)
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("after 10 wrong tries a new code in another project: %d %s, want 429 with Retry-After", r.Status, r.Body)
	}
	if r.detail() != "Too many requests. Please try again later." {
		t.Fatalf("429 body: %s", r.Body)
	}
}

// Case@Example.COM and case@example.com became two users.
func TestDefectCaseVariantsAreOneUser(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	local := "case-" + randHex(4)
	var ids []string
	for i, email := range []string{strings.ToUpper(local) + "@Example.COM", local + "@example.com"} {
		project := fmt.Sprintf("p%d", i)
		code := inst.sendAndRead(t, env.SMTP, email, project)
		r := inst.verify(t, "v1", email, project, code)
		var p authd.Proof
		json.Unmarshal(r.Body, &p)
		if r.Status != 200 || p.Email != local+"@example.com" {
			t.Fatalf("verify %s: %d %s", email, r.Status, r.Body)
		}
		ids = append(ids, p.AuthUserID)
	}
	if ids[0] != ids[1] {
		t.Fatalf("two users for one address: %v", ids)
	}
}

// An empty project_id was accepted.
func TestDefectEmptyProjectID(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	r := inst.send(t, "v1", uniqueEmail("empty"), "")
	if r.Status != 422 || !strings.Contains(string(r.Body), `"project_id"`) {
		t.Fatalf("empty project_id: %d %s", r.Status, r.Body)
	}
	if len(env.SMTP.Messages()) != 0 {
		t.Fatal("a mail was sent")
	}
}

// Codes were written in plain text to the log: in production authd never
// does (the proof and secret checks are in TestProductionRoundTrip).
func TestDefectNoCodeInProductionLog(t *testing.T) {
	env := newProduction(t)
	env.Env["LOG_LEVEL"] = "debug"
	inst := start(t, env.Env)
	email := uniqueEmail("log")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	inst.verify(t, "v1", email, "shop", wrongCode(code, 1))
	inst.verify(t, "v1", email, "shop", code)
	inst.stop()
	if strings.Contains(inst.Logs.String(), code) {
		t.Fatalf("the production log holds the code")
	}
	if strings.Contains(inst.Logs.String(), email) {
		t.Fatalf("the production log holds the address unmasked")
	}
}

// A database failure at verify time answers 503 fast and loses nothing:
// the same code works once the database is back.
func TestDatabaseFailureRestoresCode(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	email := uniqueEmail("restore")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")

	restore := hideUsers(t, env.DB)
	began := time.Now()
	r := inst.verify(t, "v1", email, "shop", code)
	if r.Status != http.StatusServiceUnavailable || time.Since(began) > 3*time.Second {
		t.Fatalf("verify with the table gone: %d in %v: %s", r.Status, time.Since(began), r.Body)
	}
	if strings.Contains(string(r.Body), "auth_users") || strings.Contains(string(r.Body), "SQLSTATE") {
		t.Fatalf("503 body leaks the driver's message: %s", r.Body)
	}
	restore()
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("the same code after the database came back: %d %s", r.Status, r.Body)
	}
}

// Redis down: a quick 503, nothing else.
func TestRedisDownIsQuick503(t *testing.T) {
	env := newProduction(t)
	env.Env["REDIS_URL"] = "redis://127.0.0.1:1/0"
	inst := start(t, env.Env)
	for _, path := range []string{"send-code", "verify-code"} {
		began := time.Now()
		r := postJSON(t, inst.URL+"/api/v1/auth/"+path, map[string]string{"email": "a@example.com", "project_id": "shop", "code": "123456"})
		t.Logf("%s with Redis down: %d in %v", path, r.Status, time.Since(began))
		if r.Status != 503 || time.Since(began) > 3*time.Second {
			t.Fatalf("%s with Redis down: %d in %v", path, r.Status, time.Since(began))
		}
		if r.Header.Get("Content-Type") != "application/json" || strings.Contains(string(r.Body), "127.0.0.1") {
			t.Fatalf("%s 503 body: %s", path, r.Body)
		}
	}
	if len(env.SMTP.Messages()) != 0 {
		t.Fatal("a mail was sent")
	}
}
