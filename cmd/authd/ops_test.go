package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/backend"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/smtptest"
)

// tcpGate stands in for a dependency that is not up yet: until opened it
// accepts connections and closes them at once (as a container whose
// process has not started would refuse them); once opened it forwards them
// to target.
type tcpGate struct {
	ln     net.Listener
	target string
	open   atomic.Bool
	wg     sync.WaitGroup
}

func newTCPGate(t *testing.T, target string) *tcpGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &tcpGate{ln: ln, target: target}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				c.Close()
				continue
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.pipe(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return g
}

func (g *tcpGate) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (g *tcpGate) port() string { return strconv.Itoa(g.ln.Addr().(*net.TCPAddr).Port) }

// through rewrites a URL's host to go through the gate.
func (g *tcpGate) through(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "127.0.0.1:" + g.port()
	return u.String()
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

type readyAnswer struct {
	Status int
	Body   struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
}

func getReady(t *testing.T, base string) readyAnswer {
	t.Helper()
	resp, err := client.Get(base + "/api/v1/health/ready")
	if err != nil {
		t.Fatalf("readiness: %v", err)
	}
	defer resp.Body.Close()
	var a readyAnswer
	a.Status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&a.Body); err != nil {
		t.Fatalf("readiness body: %v", err)
	}
	return a
}

func TestReadyInProduction(t *testing.T) {
	env := newProduction(t)
	inst := start(t, env.Env)
	a := getReady(t, inst.URL)
	if a.Status != 200 || a.Body.Status != "ready" || a.Body.Checks["database"] != "ok" || a.Body.Checks["redis"] != "ok" || a.Body.Checks["mail"] != "ok" || a.Body.Checks["redis_eviction"] != "ok" || a.Body.Checks["mail_lag"] != "ok" {
		t.Fatalf("readiness: %+v", a)
	}
}

// fakeRedis answers the readiness probe's questions as told.
type fakeRedis struct {
	pingErr, evictionErr error
	policy               string
}

func (f fakeRedis) Ping(context.Context) error { return f.pingErr }
func (f fakeRedis) CheckEviction(context.Context) (string, bool, error) {
	return f.policy, f.policy == "noeviction", f.evictionErr
}

func TestReadinessChecks(t *testing.T) {
	// eval builds the checks as newApp does: the database, Redis's when
	// Redis is configured (redis nil: the in-memory store), the mail
	// worker's degraded signal.
	eval := func(dbErr error, redis backend.RedisHealth, mailDegraded bool) (int, map[string]string) {
		t.Helper()
		r := &httpapi.Readiness{Checks: []httpapi.Check{{Name: "database", Check: func(context.Context) error { return dbErr }}}}
		if redis != nil {
			r.Checks = append(r.Checks, backend.RedisChecks(redis)...)
		}
		r.Checks = append(r.Checks, httpapi.Check{Name: "mail", Optional: true, Check: func(context.Context) error {
			if mailDegraded {
				return errors.New("degraded")
			}
			return nil
		}})
		r.MarkStarted()
		h := httpapi.New(httpapi.Options{ProjectName: "P", Logger: slog.New(slog.DiscardHandler), Readiness: r})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/health/ready", nil))
		var b struct{ Checks map[string]string }
		json.Unmarshal(w.Body.Bytes(), &b)
		return w.Code, b.Checks
	}
	code, c := eval(nil, fakeRedis{policy: "allkeys-lru"}, true)
	if code != 200 || c["redis_eviction"] != "degraded" || c["mail"] != "degraded" || c["database"] != "ok" {
		t.Fatalf("evicting Redis, degraded mail: %d %v", code, c)
	}
	code, c = eval(errors.New("down"), fakeRedis{policy: "noeviction", pingErr: errors.New("down")}, false)
	if code != 503 || c["database"] != "down" || c["redis"] != "down" || c["mail"] != "ok" || c["redis_eviction"] != "ok" {
		t.Fatalf("both down: %d %v", code, c)
	}
	// Redis down: its eviction policy is not known, not bad.
	down := authd.Unavailable("redis", errors.New("connection refused"))
	code, c = eval(nil, fakeRedis{pingErr: down, evictionErr: down}, false)
	if code != 503 || c["redis"] != "down" || c["redis_eviction"] != "unknown" {
		t.Fatalf("Redis down: %d %v", code, c)
	}
	// The in-memory store has nothing to ask: no redis checks.
	code, c = eval(nil, nil, false)
	if _, ok := c["redis"]; code != 200 || ok {
		t.Fatalf("in memory: %d %v", code, c)
	}
}

// Containers start in any order: authd starts with PostgreSQL and Redis
// unreachable, says not ready, answers 503 on the auth endpoints, and
// serves — migrations run — as soon as they answer.
func TestStartsBeforeDependencies(t *testing.T) {
	env := newProduction(t)
	db := newTCPGate(t, hostOf(t, env.DB))
	rd := newTCPGate(t, hostOf(t, env.Env["REDIS_URL"]))
	env.Env["DATABASE_URL"] = db.through(t, env.DB)
	env.Env["REDIS_URL"] = rd.through(t, env.Env["REDIS_URL"])
	inst := start(t, env.Env)

	a := getReady(t, inst.URL)
	if a.Status != 503 || a.Body.Checks["database"] != "down" || a.Body.Checks["redis"] != "down" || a.Body.Checks["startup"] != "starting" {
		t.Fatalf("readiness with nothing up: %+v", a)
	}
	email := uniqueEmail("early")
	began := time.Now()
	if r := inst.send(t, "v1", email, "shop"); r.Status != 503 || time.Since(began) > 2*time.Second {
		t.Fatalf("send-code before the database: %d in %v %s", r.Status, time.Since(began), r.Body)
	}

	db.open.Store(true)
	rd.open.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		a = getReady(t, inst.URL)
		if a.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 10s after the dependencies came up: %+v\n%s", a, inst.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("verify once up: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(inst.Logs.String(), "migrations applied") {
		t.Fatalf("no migration after the database came up:\n%s", inst.Logs.String())
	}
	// What the libraries said while their servers were away is JSON too.
	for _, line := range strings.Split(strings.TrimSpace(inst.Logs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not one JSON object: %q", line)
		}
	}
}

// /metrics is private by default: on METRICS_ADDR (127.0.0.1:9464), never
// on the public port unless METRICS_ADDR names it on purpose, and then
// with a warning and the refused codes' outcomes merged.
func TestMetricsEndpoint(t *testing.T) {
	env := newProduction(t)
	mport := freePort(t)
	env.Env["METRICS_ADDR"] = "127.0.0.1:" + strconv.Itoa(mport)
	inst := start(t, env.Env)
	email := uniqueEmail("metrics")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	inst.verify(t, "v1", email, "shop", wrongCode(code, 3))
	inst.verify(t, "v1", email, "shop", code)
	inst.send(t, "v1", email, "shop") // cooldown: 429

	getText(t, inst.URL+"/metrics", 404)
	body := getText(t, "http://127.0.0.1:"+strconv.Itoa(mport)+"/metrics", 200)
	for _, want := range []string{
		`authd_http_requests_total{route="POST /api/v1/auth/send-code",status="200"} 1`,
		`authd_http_requests_total{route="POST /api/v1/auth/send-code",status="429"} 1`,
		`authd_codes_sent_total 1`,
		`authd_verifications_total{outcome="success"} 1`,
		`authd_verifications_total{outcome="wrong"} 1`,
		`authd_rate_limit_rejections_total{limit="cooldown"} 1`,
		`authd_mail_jobs_total{outcome="sent"} 1`,
		`authd_build_info{`,
		`authd_pgx_pool_total_conns `,
		`authd_redis_pool_total_conns `,
		`authd_mail_queue_age_seconds `,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// On the public port on purpose: a warning, and no split of the
	// refused codes.
	env2 := newProduction(t)
	port := strconv.Itoa(freePort(t))
	env2.Env["PORT"], env2.Env["METRICS_ADDR"] = port, "127.0.0.1:"+port
	inst2 := start(t, env2.Env)
	code = inst2.sendAndRead(t, env2.SMTP, email, "shop")
	inst2.verify(t, "v1", email, "shop", wrongCode(code, 3))
	body = getText(t, inst2.URL+"/metrics", 200)
	if !strings.Contains(body, `authd_verifications_total{outcome="invalid"} 1`) || strings.Contains(body, `authd_verifications_total{outcome="wrong"} 1`) {
		t.Errorf("public metrics split the refused codes:\n%s", grepLines(body, "authd_verifications_total"))
	}
	if !strings.Contains(inst2.Logs.String(), "METRICS_ADDR is the main listener") {
		t.Error("no warning that /metrics is public")
	}
	// A taken port stops start-up, naming METRICS_ADDR.
	env3 := newProduction(t)
	env3.Env["METRICS_ADDR"] = "127.0.0.1:" + strconv.Itoa(mport) // inst's
	_, errs, code3 := runCmd(t, env3.Env, "serve")
	if code3 != 1 || !strings.Contains(errs, "\nconfig: METRICS_ADDR: ") {
		t.Errorf("serve with METRICS_ADDR taken: exit %d %q", code3, errs)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func getText(t *testing.T, u string, want int) string {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", u, resp.StatusCode, want, b)
	}
	return string(b)
}

// In JSON mode every line is one JSON object, there is one access line
// per request with its id, and no code, signature, token, secret or SMTP
// password reaches the log, whatever the requests do.
func TestProductionLogs(t *testing.T) {
	const smtpPass = "smtp-pass-Zq8v7KfW3mT"
	env := newProduction(t, smtptest.WithAuth("mailer", smtpPass))
	env.Env["SMTP_USER"] = "mailer"
	env.Env["SMTP_PASSWORD"] = smtpPass
	env.Env["LOG_LEVEL"] = "debug"
	env.Env["LOG_FORMAT"] = "json"
	inst := start(t, env.Env)

	email := uniqueEmail("Logs")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	inst.verify(t, "v1", email, "shop", wrongCode(code, 1))
	ok := inst.verify(t, "v2", email, "shop", code)
	if ok.Status != 200 {
		t.Fatalf("verify: %d %s", ok.Status, ok.Body)
	}
	proof := ok.json(t)
	sig, _ := proof["signature"].(string)
	token, _ := proof["token"].(string)
	if sig == "" || token == "" {
		t.Fatalf("v2 verify-code without a signature or token: %s", ok.Body)
	}
	inst.verify(t, "v1", email, "shop", code) // used: 401
	req, _ := http.NewRequest("GET", inst.URL+"/api/v1/health", nil)
	req.Header.Set("X-Request-ID", "trace-42")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-ID") != "trace-42" {
		t.Fatalf("request id not echoed: %q", resp.Header.Get("X-Request-ID"))
	}
	if err := inst.stop(); err != nil {
		t.Fatal(err)
	}

	logs := inst.Logs.String()
	access, traced := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not one JSON object: %q", line)
			continue
		}
		if m["msg"] == "request" {
			access++
			if id, _ := m["request_id"].(string); id == "" {
				t.Errorf("access line without a request id: %s", line)
			}
			if m["request_id"] == "trace-42" {
				traced++
			}
		}
	}
	if traced != 1 {
		t.Errorf("the request's own X-Request-ID is on %d access lines, want 1", traced)
	}
	if access < 5 {
		t.Errorf("want an access line per request (5+), got %d", access)
	}
	secrets := map[string]string{
		"code": code, "signature": sig, "SECRET_KEY": testSecret,
		"AUTHD_MASTER_KEY": env.Env["AUTHD_MASTER_KEY"], "SMTP_PASSWORD": smtpPass,
		"the address": strings.ToLower(email), "token": token,
	}
	for what, s := range secrets {
		if s != "" && strings.Contains(strings.ToLower(logs), strings.ToLower(s)) {
			t.Errorf("the log holds %s", what)
		}
	}
	if sig == "" {
		t.Fatal("no signature to look for")
	}
	if !strings.Contains(logs, `"email":"l***@example.com"`) {
		t.Errorf("no masked address on the access lines")
	}
}

// go-redis's own log lines go through authd's logger: one JSON object a
// line, like everything else.
func TestRedisLibraryLogIsJSON(t *testing.T) {
	var buf syncBuffer
	redis.SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { redis.SetLogger(slog.New(slog.DiscardHandler)) })
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	// A sub-millisecond expiry makes go-redis log that it truncates it.
	c.Set(context.Background(), "k", "v", 500*time.Microsecond)
	out := strings.TrimSpace(buf.String())
	if out == "" {
		t.Fatal("go-redis logged nothing through authd's logger")
	}
	for _, line := range strings.Split(out, "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if m["component"] != "go-redis" {
			t.Fatalf("line without its component: %q", line)
		}
	}
}
