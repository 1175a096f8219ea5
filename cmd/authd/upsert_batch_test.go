package main

import (
	"net/http"
	"sync"
	"testing"
)

// Concurrent verifications share their upserts (internal/postgres,
// batch.go); a database failure under them still answers each one 503
// and gives each its code back: once the database is back, every code
// verifies, each for its own user.
func TestDatabaseFailureRestoresConcurrentCodes(t *testing.T) {
	env := newProduction(t)
	env.Env["LIMIT_SEND_CODE_PER_IP"], env.Env["LIMIT_VERIFY_CODE_PER_IP"] = "0", "0"
	inst := start(t, env.Env)
	const n = 24
	emails, codes := make([]string, n), make([]string, n)
	for i := range n {
		emails[i] = uniqueEmail("batch")
		codes[i] = inst.sendAndRead(t, env.SMTP, emails[i], "shop")
	}
	verifyAll := func() []response {
		out := make([]response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { out[i] = inst.verify(t, "v1", emails[i], "shop", codes[i]) })
		}
		wg.Wait()
		return out
	}
	restore := hideUsers(t, env.DB)
	for i, r := range verifyAll() {
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("verify %d with the table gone: %d %s", i, r.Status, r.Body)
		}
	}
	restore()
	ids := map[string]bool{}
	for i, r := range verifyAll() {
		if r.Status != http.StatusOK {
			t.Fatalf("verify %d with its code once the database is back: %d %s", i, r.Status, r.Body)
		}
		body := r.json(t)
		if body["email"] != emails[i] {
			t.Fatalf("verify %d answered for %v, want %s", i, body["email"], emails[i])
		}
		ids[body["auth_user_id"].(string)] = true
	}
	if len(ids) != n {
		t.Fatalf("%d users for %d addresses", len(ids), n)
	}
}
