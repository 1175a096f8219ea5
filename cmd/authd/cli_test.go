package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/testenv"
)

// runCmd runs authd's run() with args and exactly env, as main would.
func runCmd(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	return runCmdInput(t, env, "", args...)
}

// runCmdInput is runCmd with input on stdin.
func runCmdInput(t *testing.T, env map[string]string, input string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(input), &out, &errb)
	code := 0
	if err != nil {
		code = exitCode(err)
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"users", "--help"},
		{"users", "show", "--help"}, {"users", "delete", "--help"}, {"users", "duplicates", "--help"},
		{"users", "unlock", "--help"}, {"healthcheck", "--help"}, {"proof", "verify", "--help"},
		{"version", "--help"}, {"keys", "--help"},
	} {
		out, _, code := runCmd(t, map[string]string{}, args...)
		if code != 0 || !strings.Contains(out, "Exit codes") || !strings.Contains(out, "healthcheck") {
			t.Errorf("%v: exit %d, usage printed %t", args, code, strings.Contains(out, "Exit codes"))
		}
	}
	if _, _, code := runCmd(t, map[string]string{}, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	port := strings.TrimPrefix(inst.URL, "http://127.0.0.1:")
	// HOST 0.0.0.0 (the container's) is asked on loopback.
	out, errs, code := runCmd(t, map[string]string{"HOST": "0.0.0.0", "PORT": port}, "healthcheck")
	if code != 0 || !strings.Contains(out, `"database":"ok"`) {
		t.Fatalf("healthcheck on a ready server: exit %d %s %s", code, out, errs)
	}
	_, errs, code = runCmd(t, map[string]string{"PORT": strconv.Itoa(freePort(t))}, "healthcheck")
	if code != 1 {
		t.Fatalf("healthcheck with nothing listening: exit %d %s", code, errs)
	}

	// Not ready (Redis unreachable): exit 1.
	env2 := newProduction(t)
	env2.Env["REDIS_URL"] = "redis://127.0.0.1:1/0"
	inst2 := start(t, env2.Env)
	_, errs, code = runCmd(t, map[string]string{"HOST": "127.0.0.1", "PORT": strings.TrimPrefix(inst2.URL, "http://127.0.0.1:")}, "healthcheck")
	if code != 1 || !strings.Contains(errs, "not ready (503)") || !strings.Contains(errs, `"redis":"down"`) {
		t.Fatalf("healthcheck on an unready server: exit %d %s", code, errs)
	}
}

func TestUsersShowDeleteDuplicates(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	email := uniqueEmail("erase")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	// A live code in another project, a wrong try (failure budget), a
	// cooldown: all of it is the address's state in Redis.
	inst.sendAndRead(t, env.SMTP, email, "blog")
	inst.verify(t, "v1", email, "blog", "000000")

	// A case variant, as the original service made them.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	upper := strings.ToUpper(email[:1]) + email[1:]
	if _, err := conn.Exec(ctx, `INSERT INTO auth_users (id, email, created_at) VALUES (gen_random_uuid(), $1, now() at time zone 'utc')`, upper); err != nil {
		t.Fatal(err)
	}

	out, errs, ec := runCmd(t, env.Env, "users", "show", strings.ToUpper(email))
	var shown map[string]string
	if ec != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["email"] != email || shown["id"] == "" {
		t.Fatalf("users show: exit %d %q %s", ec, out, errs)
	}
	out, _, ec = runCmd(t, env.Env, "users", "duplicates")
	if ec != 0 || !strings.Contains(out, email+": 2 rows") || !strings.Contains(out, upper) {
		t.Fatalf("users duplicates: exit %d %s", ec, out)
	}

	rdb := goredisClient(t)
	prefix := env.Env["REDIS_KEY_PREFIX"]
	before := countKeys(t, rdb, prefix)
	out, errs, ec = runCmd(t, env.Env, "users", "delete", email)
	if ec != 0 || !strings.Contains(out, "deleted 2 user row(s)") {
		t.Fatalf("users delete: exit %d %s %s", ec, out, errs)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM auth_users WHERE lower(email) = $1`, email).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows left after delete: %d %v", n, err)
	}
	after := countKeys(t, rdb, prefix)
	t.Logf("Redis keys under the test prefix: %d before, %d after; %s", before, after, out)
	// The code of "blog", both cooldowns and both budgets are gone: a new
	// code can be sent at once (no cooldown) and the old one is dead.
	if r := inst.send(t, "v1", email, "blog"); r.Status != 200 {
		t.Fatalf("send after erasure (cooldown should be gone): %d %s", r.Status, r.Body)
	}
	if _, _, ec := runCmd(t, env.Env, "users", "show", email); ec != 1 {
		t.Fatalf("users show after delete: exit %d, want 1", ec)
	}
	if _, _, ec := runCmd(t, env.Env, "users", "show", "not an address"); ec != 2 {
		t.Fatalf("users show with a bad address: exit %d, want 2", ec)
	}
}

// In development mode (SQLite, codes in memory) delete erases the rows and
// says where the rest lives.
func TestUsersDeleteDevelopment(t *testing.T) {
	env := map[string]string{"AUTHD_DATA_DIR": t.TempDir()}
	if _, errs, ec := runCmd(t, env, "migrate"); ec != 0 {
		t.Fatalf("migrate: %s", errs)
	}
	out, errs, ec := runCmd(t, env, "users", "delete", "Nobody@Example.com")
	if ec != 0 || !strings.Contains(out, "deleted 0 user row(s) of nobody@example.com") || !strings.Contains(out, "memory") {
		t.Fatalf("users delete in development: exit %d %q %q", ec, out, errs)
	}
	if _, _, ec := runCmd(t, env, "users", "delete"); ec != 2 {
		t.Fatalf("users delete without an address: exit %d, want 2", ec)
	}
}

func goredisClient(t *testing.T) *goredis.Client {
	t.Helper()
	o, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func countKeys(t *testing.T, c *goredis.Client, prefix string) int {
	t.Helper()
	keys, err := c.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestProofVerifyCommand(t *testing.T) {
	env := newProduction(t)
	// The issuer is the instance itself, so that the command finds the
	// published keys at AUTHD_ISSUER/.well-known/jwks.json.
	port := strconv.Itoa(freePort(t))
	env.Env["PORT"] = port
	env.Env["AUTHD_ISSUER"] = "http://127.0.0.1:" + port
	inst := start(t, env.Env)
	email := uniqueEmail("proofcli")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	r := inst.verify(t, "v2", email, "shop", code)
	if r.Status != 200 {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	var answer map[string]any
	json.Unmarshal(r.Body, &answer)
	token, _ := answer["token"].(string)
	if token == "" {
		t.Fatalf("no token in %s", r.Body)
	}
	// The v1 proof: the answer less the v2 fields.
	for _, k := range []string{"token", "token_type", "expires_in"} {
		delete(answer, k)
	}
	proofJSON, _ := json.Marshal(answer)

	check := func(input string, wantCode int, want string, args ...string) {
		t.Helper()
		out, errs, ec := runCmdInput(t, env.Env, input, append([]string{"proof", "verify"}, args...)...)
		if ec != wantCode || !strings.Contains(out+errs, want) {
			t.Errorf("proof verify %v: exit %d (want %d), %q %q, want %q", args, ec, wantCode, out, errs, want)
		}
	}
	check(string(proofJSON), 0, "valid v1 proof: ")
	check(string(proofJSON), 0, email, "--audience", "shop")
	check(string(proofJSON), 1, "INVALID: wrong_audience", "--audience", "bank")
	check(strings.Replace(string(proofJSON), `"project_id":"shop"`, `"project_id":"bank"`, 1), 1, "INVALID: bad_signature")
	check(token, 0, "valid token: ")
	check(token, 0, "aud=shop", "--audience", "shop")
	check(token, 1, "INVALID: wrong_audience", "--audience", "bank")
	check(token[:len(token)-4]+"AAAA", 1, "INVALID: bad_signature")
	check("not json", 1, "INVALID: malformed")
	check(token, 2, "unknown flag", "--frobnicate", "x")
	// A token needs no SECRET_KEY; a v1 proof does.
	noSecret := cloneEnv(env.Env)
	delete(noSecret, "SECRET_KEY")
	if out, errs, ec := runCmdInput(t, noSecret, token, "proof", "verify", "--audience", "shop"); ec != 0 || !strings.Contains(out, "valid token") {
		t.Errorf("a token without SECRET_KEY: exit %d %q %q", ec, out, errs)
	}
	if _, errs, ec := runCmdInput(t, noSecret, string(proofJSON), "proof", "verify"); ec != 1 || !strings.Contains(errs, "config: SECRET_KEY:") {
		t.Errorf("a v1 proof without SECRET_KEY: exit %d %q", ec, errs)
	}
}

// The image's binary: a static CGO_ENABLED=0 build, run as uid/gid 65532
// (distroless's nonroot) with a data directory of its own, answers.
func TestStaticBuildRunsAsNonRoot(t *testing.T) {
	setpriv := testenv.LookPath(t, "setpriv")
	if os.Geteuid() != 0 {
		testenv.Skip(t, "not root: cannot switch to uid 65532 to run the binary")
	}
	bin := buildAuthd(t)
	if out, err := exec.Command("file", bin).CombinedOutput(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Fatalf("not a static binary: %s", out)
	}
	// A directory uid 65532 can reach: the binary and an empty data dir.
	dir, err := os.MkdirTemp("", "authd-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	b, _ := os.ReadFile(bin)
	nbin := filepath.Join(dir, "authd")
	if err := os.WriteFile(nbin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o700)
	if err := os.Chown(data, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freePort(t))
	cmd := exec.Command(setpriv, "--reuid=65532", "--regid=65532", "--clear-groups", nbin)
	cmd.Dir = dir
	cmd.Env = []string{"HOST=127.0.0.1", "PORT=" + port, "AUTHD_DATA_DIR=" + data, "METRICS_ADDR=127.0.0.1:0"}
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/api/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the static binary as uid 65532 did not answer:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// It runs as 65532 and wrote its state there, not as root.
	st, err := os.Stat(filepath.Join(data, "authd.db"))
	if err != nil {
		t.Fatalf("no SQLite database in the data dir: %v", err)
	}
	if uid := fileUID(st); uid != 65532 {
		t.Fatalf("authd.db owned by uid %d, want 65532", uid)
	}
	if out, err := exec.Command(nbin, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "authd "+builtVersion {
		t.Errorf("authd version: %q %v (the -X main.version of the Dockerfile's build)", out, err)
	}
	// The image's HEALTHCHECK, as uid 65532 too.
	hc := exec.Command(setpriv, "--reuid=65532", "--regid=65532", "--clear-groups", nbin, "healthcheck")
	hc.Env = []string{"HOST=0.0.0.0", "PORT=" + port}
	if out, err := hc.CombinedOutput(); err != nil {
		t.Fatalf("authd healthcheck: %v %s", err, out)
	}
}

func fileUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func TestCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"--help"}, {"help"}, {"migrate", "--help"}, {"users", "--help"}, {"version"}} {
		out.Reset()
		if err := run(context.Background(), args, func(string) string { return "" }, nil, &out, &errOut); err != nil || out.Len() == 0 {
			t.Fatalf("%v: %v %q", args, err, out.String())
		}
	}
	err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, nil, &out, &errOut)
	if err == nil || exitCode(err) != 2 {
		t.Fatalf("unknown command: %v (exit %d)", err, exitCode(err))
	}
}

// One argument style for every command: a bad flag value names the flag
// and what it wants, a missing value or an extra argument is refused, and
// --help is the command's own.
func TestCommandLineErrors(t *testing.T) {
	env := map[string]string{"AUTHD_DATA_DIR": t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "rotate", "--delay", "soon"}, "--delay wants a duration such as 5m"},
		{[]string{"keys", "rotate", "--delay=-1s"}, "--delay wants a duration such as 5m"},
		{[]string{"keys", "rotate", "--delay"}, "--delay wants"},
		{[]string{"proof", "verify", "--max-age", "old"}, "--max-age wants a duration such as 15m"},
		{[]string{"proof", "verify", "--audience", "no spaces"}, "--audience wants a project_id"},
		{[]string{"users", "show", "a@example.com", "b@example.com"}, "want authd users show EMAIL"},
		{[]string{"users", "show"}, "want authd users show EMAIL"},
		{[]string{"version", "extra"}, "want authd version"},
		{[]string{"migrate", "sideways"}, "want authd migrate"},
		{[]string{"keys", "list", "--delay", "1m"}, "unknown flag --delay"},
		{[]string{"users"}, "authd users: want one of"},
	} {
		_, errs, code := runCmd(t, env, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 saying %q", tc.args, code, errs, tc.want)
		}
	}
	out, _, code := runCmd(t, env, "users", "--help")
	if code != 0 || !strings.Contains(out, "authd users show EMAIL") || strings.Contains(out, "keys rotate") {
		t.Errorf("users --help: exit %d, want the users commands only:\n%s", code, out)
	}
	if _, errs, _ := runCmd(t, env, "keys", "rotate", "-x"); !strings.Contains(errs, "unknown flag -x") {
		t.Errorf("a flag is named as typed: %q", errs)
	}
	out, _, code = runCmd(t, env, "keys", "rotate", "--help")
	if code != 0 || !strings.Contains(out, "Usage: authd keys rotate [--delay D]") || !strings.Contains(out, "Example:\n  authd keys rotate --delay 10m") {
		t.Errorf("keys rotate --help: exit %d\n%s", code, out)
	}
}

// Each command reads only the configuration it uses: with the database
// set and everything else missing or wrong, the database's commands work,
// and serve (which checks everything) refuses to start, naming a variable.
func TestCommandsReadOnlyWhatTheyUse(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL": scratchDatabase(t), "AUTHD_DATA_DIR": t.TempDir(),
		// Production mode without its secrets, and wrong values elsewhere.
		"SMTP_PORT": "nope", "LIMIT_SEND_CODE_PER_IP": "lots", "PORT": "-1",
	}
	for _, args := range [][]string{{"migrate"}, {"migrate", "status"}, {"users", "duplicates"}, {"keys", "list"}} {
		if out, errs, code := runCmd(t, env, args...); code != 0 {
			t.Errorf("%v: exit %d %s %s", args, code, out, errs)
		}
	}
	if _, errs, code := runCmd(t, env, "users", "show", "nobody@example.com"); code != 1 || !strings.Contains(errs, "no user for nobody@example.com") {
		t.Errorf("users show: exit %d %s", code, errs)
	}
	// On a database authd never started on, the users commands find their
	// tables; unlock in development mode refuses before it writes a key.
	dev := map[string]string{"AUTHD_DATA_DIR": t.TempDir()}
	if _, errs, code := runCmd(t, dev, "users", "show", "nobody@example.com"); code != 1 || !strings.Contains(errs, "no user for") {
		t.Errorf("users show on a fresh data directory: exit %d %s", code, errs)
	}
	if _, _, code := runCmd(t, dev, "users", "unlock", "nobody@example.com"); code != 1 {
		t.Errorf("users unlock in development mode: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dev["AUTHD_DATA_DIR"], "master_key")); err == nil {
		t.Error("users unlock in development mode wrote a master key")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"users", "delete", "nobody@example.com"}, "config: "}, // needs Redis's settings and the master key
		{[]string{"serve"}, "config: "},
	} {
		if _, errs, code := runCmd(t, env, tc.args...); code != 1 || !strings.HasPrefix(errs, tc.want) {
			t.Errorf("%v: exit %d %q, want a config error", tc.args, code, errs)
		}
	}
}
