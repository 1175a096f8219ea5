package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/internal/testenv"
)

// The newcomer's path: no services, the code read from the log.
func TestDevelopmentModeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	inst := start(t, map[string]string{"AUTHD_DATA_DIR": dir})
	if !strings.Contains(inst.Logs.String(), "DEVELOPMENT MODE") {
		t.Fatalf("no development-mode banner in the log:\n%s", inst.Logs)
	}
	r := inst.send(t, "v1", "Ana@Example.com", "shop")
	if r.Status != 200 || string(r.Body) != `{"message":"Verification code sent successfully"}` {
		t.Fatalf("send-code: %d %s", r.Status, r.Body)
	}
	code := waitLogCode(t, inst, "ana@example.com")
	r = inst.verify(t, "v1", "ana@example.com", "shop", code)
	if r.Status != 200 {
		t.Fatalf("verify-code: %d %s", r.Status, r.Body)
	}
	var p authd.Proof
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(dir, "secret_key"))
	if err != nil {
		t.Fatalf("development SECRET_KEY not kept in the data dir: %v", err)
	}
	if !proof.NewHMAC(strings.TrimSpace(string(secret))).Verify(p) {
		t.Fatalf("proof does not verify with the kept SECRET_KEY: %s", r.Body)
	}
	if p.Email != "ana@example.com" || p.ProjectID != "shop" || !p.Verified {
		t.Fatalf("proof fields: %+v", p)
	}
	// v1's proof has exactly the original's six fields, in its order.
	want := regexp.MustCompile(`^\{"auth_user_id":"[0-9a-f-]{36}","email":"ana@example.com","project_id":"shop","verified":true,"issued_at":\d+,"signature":"[0-9a-f]{64}"\}$`)
	if !want.Match(r.Body) {
		t.Fatalf("v1 proof body is not the original's: %s", r.Body)
	}
}

var logCodeRE = regexp.MustCompile(`code=(\d{6})`)

// waitLogCode returns the newest code the log mailer wrote for email.
func waitLogCode(t *testing.T, inst *instance, email string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var code string
		for _, line := range strings.Split(inst.Logs.String(), "\n") {
			if strings.Contains(line, "to="+email) {
				if m := logCodeRE.FindStringSubmatch(line); m != nil {
					code = m[1]
				}
			}
		}
		if code != "" {
			return code
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no code for %s in the log:\n%s", email, inst.Logs)
	return ""
}

// The operator's path: PostgreSQL, Redis, real SMTP; the proof checked with
// the original's Python recipe.
func TestProductionRoundTrip(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	email := uniqueEmail("bob")
	r := inst.send(t, "v2", strings.ToUpper(email), "shop")
	if r.Status != 200 {
		t.Fatalf("send-code: %d %s", r.Status, r.Body)
	}
	body := r.json(t)
	if body["expires_in"] != 300.0 || body["resend_after"] != 60.0 || body["message"] != "Verification code sent successfully" {
		t.Fatalf("v2 send-code body: %s", r.Body)
	}
	code := mailCode(t, env.SMTP, email, 0)
	msgs := env.SMTP.Messages()
	m := msgs[len(msgs)-1]
	if from := m.Header.Get("From"); !strings.Contains(from, "Authd Tests") || !strings.Contains(from, "<noreply@authd.test>") {
		t.Errorf("From: %q", from)
	}
	if !strings.Contains(m.HTML, code) {
		t.Errorf("HTML part lacks the code")
	}

	r = inst.verify(t, "v1", email, "shop", code)
	if r.Status != 200 {
		t.Fatalf("verify-code: %d %s", r.Status, r.Body)
	}
	checkWithPython(t, r.Body, testSecret)

	logs := inst.Logs.String()
	var p authd.Proof
	json.Unmarshal(r.Body, &p)
	for _, secret := range []string{code, p.Signature, testSecret, env.Env["AUTHD_MASTER_KEY"]} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a code, signature or secret")
		}
	}
	// Every production log line is JSON.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
	}
}

// pythonRecipe is the README's "verify a proof in Python" example: what a
// service written against the original does.
const pythonRecipe = `
import hashlib, hmac, json, sys
SECRET_KEY = sys.argv[1]
proof = json.loads(sys.stdin.read())
payload = {k: proof[k] for k in ("auth_user_id", "email", "issued_at", "project_id", "verified")}
message = json.dumps(payload, sort_keys=True)
expected = hmac.new(SECRET_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()
print(hmac.compare_digest(expected, proof["signature"]))
`

func checkWithPython(t *testing.T, proofJSON []byte, secret string) {
	t.Helper()
	py := testenv.LookPath(t, "python3")
	cmd := exec.Command(py, "-c", pythonRecipe, secret)
	cmd.Stdin = strings.NewReader(string(proofJSON))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, out)
	}
	if strings.TrimSpace(string(out)) != "True" {
		t.Fatalf("the original's Python recipe rejects the proof: %s", out)
	}
}

// The original's database, adopted as it is: ids kept, case variants left
// in place, the oldest found; configured with the original's variables.
func TestAdoptsOriginalDatabase(t *testing.T) {
	env := newProduction(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const oldID, newID, otherID = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"
	_, err = conn.Exec(ctx, `
		CREATE TABLE auth_users (
			id UUID PRIMARY KEY,
			email VARCHAR NOT NULL,
			created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT (now() at time zone 'utc'),
			last_verified_at TIMESTAMP WITHOUT TIME ZONE
		);
		CREATE UNIQUE INDEX ix_auth_users_email ON auth_users (email);
		INSERT INTO auth_users VALUES
			('`+oldID+`', 'Case@Example.COM', '2024-01-01 10:00:00', '2024-01-02 10:00:00'),
			('`+newID+`', 'case@example.com', '2024-03-01 10:00:00', NULL),
			('`+otherID+`', 'zed@example.com', '2024-02-01 10:00:00', NULL);`)
	if err != nil {
		t.Fatal(err)
	}
	// The original's variables, not DATABASE_URL.
	u, _ := pgx.ParseConfig(env.DB)
	e := env.Env
	delete(e, "DATABASE_URL")
	e["POSTGRES_SERVER"] = u.Host
	e["POSTGRES_PORT"] = itoa(int(u.Port))
	e["POSTGRES_USER"] = u.User
	e["POSTGRES_PASSWORD"] = u.Password
	if u.Password == "" {
		e["POSTGRES_PASSWORD"] = "postgres"
	}
	e["POSTGRES_DB"] = u.Database
	inst := start(t, e)

	for _, tc := range []struct{ email, id string }{
		{"CASE@example.com", oldID}, {"case@EXAMPLE.com", oldID}, {"Zed@example.com", otherID}, {"new@example.com", ""},
	} {
		project := "p-" + randHex(3)
		code := inst.sendAndRead(t, env.SMTP, tc.email, project)
		r := inst.verify(t, "v1", tc.email, project, code)
		if r.Status != 200 {
			t.Fatalf("verify %s: %d %s", tc.email, r.Status, r.Body)
		}
		var p authd.Proof
		json.Unmarshal(r.Body, &p)
		if tc.id != "" && p.AuthUserID != tc.id {
			t.Errorf("%s: auth_user_id %s, want the oldest row's %s", tc.email, p.AuthUserID, tc.id)
		}
		checkWithPython(t, r.Body, testSecret)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM auth_users WHERE id IN ($1, $2, $3)`, oldID, newID, otherID).Scan(&n); err != nil || n != 3 {
		t.Fatalf("the original's rows: %d of 3 kept (%v)", n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM auth_users`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("rows: %d, want 3 adopted + 1 new (%v)", n, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
