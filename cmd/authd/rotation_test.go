package main

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A master-key rotation walked as an operator would, on real PostgreSQL,
// Redis and SMTP (README, "Rotating the master key"):
//
//  1. authd runs on key 1: a code is live, a mailbox has spent part of its
//     failure budget, and a mail waits in the queue (its SMTP server is down).
//  2. Key 2 alone: the start stops and says why, naming both variables and
//     the README section. (The data key's row is removed first, as if key
//     1 had run a version without one: the rotation is also an upgrade.)
//  3. Key 2 with key 1 as AUTHD_MASTER_KEY_PREVIOUS: the live code
//     verifies, the budget goes on where it was, the queued mail goes out,
//     the same signing key signs.
//  4. `authd keys reseal`, then key 2 alone starts, signs with the same key,
//     and key 1 alone no longer does; `authd keys list` works throughout.
func TestMasterKeyRotation(t *testing.T) {
	env := newProduction(t)
	key1, key2 := randHex(32), randHex(32)
	env.Env["AUTHD_MASTER_KEY"] = key1
	env.Env["LIMIT_FAILURES_PER_ADDRESS"] = "3/h"
	env.Env["MAIL_RETRY_BACKOFF"] = "100ms"

	// 1. On key 1; the last mail finds its SMTP server down and stays queued.
	a := start(t, env.Env)
	live := uniqueEmail("live")
	liveCode := a.sendAndRead(t, env.SMTP, live, "shop")
	budget := uniqueEmail("budget")
	budgetCode := a.sendAndRead(t, env.SMTP, budget, "shop")
	for i := range 2 {
		if r := a.verify(t, "v1", budget, "shop", wrongCode(budgetCode, i)); r.Status != 401 {
			t.Fatalf("wrong code %d on key 1: %d %s", i, r.Status, r.Body)
		}
	}
	kid := signingKID(t, a)
	a.stop()
	down := cloneEnv(env.Env)
	down["SMTP_PORT"] = strconv.Itoa(closedPort(t))
	a = start(t, down)
	queued := uniqueEmail("queued")
	if r := a.send(t, "v1", queued, "shop"); r.Status != 200 {
		t.Fatalf("send-code on key 1: %d %s", r.Status, r.Body)
	}
	a.stop()
	sent := len(env.SMTP.Messages())
	// As if key 1's instances had run a version from before the data key:
	// no row. The rotation below is then also that version's upgrade, and
	// the first data key must be key 1 (the signing keys are sealed under
	// it), not key 2, or the live code and the budget would be orphaned.
	execSQL(t, env.DB, "DELETE FROM authd_data_key")

	// 2. Key 2 alone opens nothing stored.
	alone := cloneEnv(env.Env)
	alone["AUTHD_MASTER_KEY"] = key2
	alone["PORT"] = strconv.Itoa(freePort(t))
	_, stderr, code := runCmd(t, alone, "serve")
	for _, want := range []string{"AUTHD_MASTER_KEY opens nothing stored", "AUTHD_MASTER_KEY_PREVIOUS", "Rotating the master key"} {
		if code == 0 || !strings.Contains(stderr, want) {
			t.Fatalf("start on key 2 alone: exit %d, %q; want a refusal saying %q", code, stderr, want)
		}
	}
	if strings.Contains(stderr, key1) || strings.Contains(stderr, key2) {
		t.Fatal("the refusal repeats a master key")
	}
	if out, stderr, code := runCmd(t, alone, "keys", "list"); code != 0 || !strings.Contains(out, kid) {
		t.Fatalf("keys list on key 2 alone: exit %d, %q %q", code, out, stderr)
	}

	// 3. Key 2, key 1 as previous.
	rotating := cloneEnv(alone)
	rotating["PORT"] = ""
	rotating["AUTHD_MASTER_KEY_PREVIOUS"] = key1
	b := start(t, rotating)
	if got := tokenKID(t, b.verify(t, "v2", live, "shop", liveCode)); got != kid {
		t.Fatalf("a code issued on key 1, verified during the rotation: signed by %q, want the stored key %s", got, kid)
	}
	if r := b.verify(t, "v1", budget, "shop", wrongCode(budgetCode, 2)); r.Status != 401 {
		t.Fatalf("the third wrong code: %d %s", r.Status, r.Body)
	}
	if r := b.verify(t, "v1", budget, "shop", budgetCode); r.Status != 429 {
		t.Fatalf("the failure budget after the rotation: %d %s; want 429, the 3/h spent across both keys", r.Status, r.Body)
	}
	if c := mailCode(t, env.SMTP, queued, sent); c == "" {
		t.Fatal("the mail queued under key 1 was not delivered")
	}
	if !strings.Contains(b.Logs.String(), "authd keys reseal") {
		t.Fatal("no start-up line asks for `authd keys reseal`")
	}

	// 4. Reseal; key 2 alone; key 1 alone no more.
	out, stderr, code := runCmd(t, rotating, "keys", "reseal")
	if code != 0 || !strings.Contains(out, "data key: ") || !strings.Contains(out, "signing keys: 1 resealed") ||
		!strings.Contains(out, "remove AUTHD_MASTER_KEY_PREVIOUS after") {
		t.Fatalf("keys reseal: exit %d\n%s%s", code, out, stderr)
	}
	b.stop()
	stale := start(t, rotating)
	if !strings.Contains(stale.Logs.String(), "AUTHD_MASTER_KEY_PREVIOUS is set, but the data key and the signing keys are under AUTHD_MASTER_KEY") {
		t.Fatal("a start after the reseal with AUTHD_MASTER_KEY_PREVIOUS still set does not say it can go")
	}
	stale.stop()
	alone["PORT"] = ""
	c := start(t, alone)
	fresh := uniqueEmail("fresh")
	if got := tokenKID(t, c.verify(t, "v2", fresh, "shop", c.sendAndRead(t, env.SMTP, fresh, "shop"))); got != kid {
		t.Fatalf("after the reseal, on key 2 alone: signed by %q, want %s", got, kid)
	}
	c.stop()
	old := cloneEnv(env.Env)
	old["PORT"] = strconv.Itoa(freePort(t))
	if _, stderr, code := runCmd(t, old, "serve"); code == 0 || !strings.Contains(stderr, "AUTHD_MASTER_KEY opens nothing stored") {
		t.Fatalf("key 1 after the reseal: exit %d, %q", code, stderr)
	}
}

// signingKID is the kid inst publishes: its one signing key.
func signingKID(t *testing.T, inst *instance) string {
	t.Helper()
	r := get(t, inst.URL+"/.well-known/jwks.json")
	var set struct{ Keys []struct{ Kid string } }
	if err := json.Unmarshal(r.Body, &set); err != nil || r.Status != 200 || len(set.Keys) != 1 {
		t.Fatalf("jwks: %d %s", r.Status, r.Body)
	}
	return set.Keys[0].Kid
}

// tokenKID is the kid in the header of a v2 verify-code answer's token.
func tokenKID(t *testing.T, r response) string {
	t.Helper()
	tok, _ := r.json(t)["token"].(string)
	head, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	var h struct{ Kid string }
	if r.Status != 200 || err != nil || json.Unmarshal(raw, &h) != nil {
		t.Fatalf("v2 verify-code: %d %s", r.Status, r.Body)
	}
	return h.Kid
}

// execSQL runs one statement on the database at url.
func execSQL(t *testing.T, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}

// A first start with AUTHD_MASTER_KEY_PREVIOUS set and no signing key to
// tell which master key the live codes are under (HS256 tokens) is
// refused, saying what to do, and stores no data key.
func TestFirstStartWithPreviousRefused(t *testing.T) {
	env := newProduction(t)
	env.Env["TOKEN_ALG"], env.Env["TOKEN_HS256_SECRET"] = "HS256", randHex(32)
	env.Env["AUTHD_MASTER_KEY_PREVIOUS"] = randHex(32)
	env.Env["PORT"] = strconv.Itoa(freePort(t))
	_, stderr, code := runCmd(t, env.Env, "serve")
	if code == 0 || !strings.Contains(stderr, "no data key is stored yet and AUTHD_MASTER_KEY_PREVIOUS is set") {
		t.Fatalf("first start with a previous key and HS256: exit %d, %q", code, stderr)
	}
	delete(env.Env, "AUTHD_MASTER_KEY_PREVIOUS")
	env.Env["PORT"] = ""
	start(t, env.Env) // once without it: fine
}
