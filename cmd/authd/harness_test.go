package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// testSecret is the DESIGN.md test-vector key: long enough, and not one of
// the placeholders start-up refuses.
const testSecret = "e2e-secret-key-0123456789abcdef0123456789"

// testIssuer is the AUTHD_ISSUER of production instances in tests.
const testIssuer = "https://authd.test"

// envOf is an environment of exactly m.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// loadConfig is the whole configuration of the environment getenv, as
// serve loads it.
func loadConfig(getenv func(string) string) (config.Config, error) {
	return config.Load(getenv, "", config.All)
}

// syncBuffer collects an instance's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// instance is one authd started through run(), as main starts it.
type instance struct {
	URL  string
	Logs *syncBuffer
	Env  map[string]string
	stop func() error
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs authd with exactly env (nothing of the test process's own
// environment leaks in) and waits until it answers.
func start(t *testing.T, env map[string]string) *instance {
	t.Helper()
	env = cloneEnv(env)
	if env["PORT"] == "" {
		env["PORT"] = strconv.Itoa(freePort(t))
	}
	if env["HOST"] == "" {
		env["HOST"] = "127.0.0.1"
	}
	if env["AUTHD_DATA_DIR"] == "" {
		env["AUTHD_DATA_DIR"] = t.TempDir()
	}
	if env["METRICS_ADDR"] == "" {
		env["METRICS_ADDR"] = "127.0.0.1:0" // instances side by side
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string { return env[k] }, nil, io.Discard, logs)
	}()
	inst := &instance{URL: "http://127.0.0.1:" + env["PORT"], Logs: logs, Env: env}
	var once sync.Once
	var stopErr error
	inst.stop = func() error {
		once.Do(func() {
			// Connections the client opened but never used would hold
			// Shutdown for 5 s (net/http counts new connections as busy).
			client.CloseIdleConnections()
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(15 * time.Second):
				stopErr = fmt.Errorf("authd did not stop within 15s")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := inst.stop(); err != nil {
			t.Errorf("authd stopped with: %v", err)
		}
		if t.Failed() {
			t.Logf("authd log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("authd exited at start: %v\nlog:\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(inst.URL + "/api/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return inst
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("authd did not answer within 15s\nlog:\n%s", logs.String())
	return nil
}

func cloneEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// uniqueEmail returns an address no other test uses.
func uniqueEmail(prefix string) string {
	return prefix + "-" + randHex(6) + "@example.com"
}

// scratchDatabase creates an empty PostgreSQL database for one test and
// drops it afterwards.
func scratchDatabase(t testing.TB) string {
	t.Helper()
	base := testenv.DatabaseURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to AUTHD_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	name := "authd_e2e_" + randHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// production is the environment of a production instance on real
// PostgreSQL, Redis and SMTP (plain, as to a local relay).
type production struct {
	Env  map[string]string
	SMTP *smtptest.Server
	DB   string
}

func newProduction(t *testing.T, opts ...smtptest.Option) production {
	t.Helper()
	db := scratchDatabase(t)
	redisURL := testenv.RedisURL(t)
	prefix := "e2e-" + randHex(4) + ":"
	dropRedisPrefix(t, redisURL, prefix) // the mail streams have no TTL
	smtp := smtptest.Start(t, opts...)
	return production{
		DB:   db,
		SMTP: smtp,
		Env: map[string]string{
			"DATABASE_URL":      db,
			"REDIS_URL":         redisURL,
			"REDIS_KEY_PREFIX":  prefix,
			"SMTP_HOST":         smtp.Host(),
			"SMTP_PORT":         strconv.Itoa(smtp.Port()),
			"SMTP_TLS":          "false",
			"SECRET_KEY":        testSecret,
			"AUTHD_MASTER_KEY":  randHex(32),
			"AUTHD_ISSUER":      testIssuer,
			"EMAILS_FROM_EMAIL": "noreply@authd.test",
			"EMAILS_FROM_NAME":  "Authd Tests",
		},
	}
}

// response is one HTTP answer, body read.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

func (r response) detail() string {
	var m struct {
		Detail any `json:"detail"`
	}
	json.Unmarshal(r.Body, &m)
	s, _ := m.Detail.(string)
	return s
}

// client validates every exchange against the OpenAPI document
// (openapi_test.go).
var client = &http.Client{Timeout: 20 * time.Second, Transport: validating(&http.Transport{MaxIdleConnsPerHost: 200})}

func post(t testing.TB, url, contentType string, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func postJSON(t testing.TB, url string, v any) response {
	t.Helper()
	b, _ := json.Marshal(v)
	return post(t, url, "application/json", string(b))
}

func (i *instance) send(t testing.TB, version, email, project string) response {
	t.Helper()
	return postJSON(t, i.URL+"/api/"+version+"/auth/send-code", map[string]string{"email": email, "project_id": project})
}

func (i *instance) verify(t testing.TB, version, email, project, code string) response {
	t.Helper()
	return postJSON(t, i.URL+"/api/"+version+"/auth/verify-code", map[string]string{"email": email, "project_id": project, "code": code})
}

// mailCode waits for a mail to email beyond the first `after` messages the
// server received, and returns the code of the newest.
func mailCode(t *testing.T, s *smtptest.Server, email string, after int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := s.Messages()
		for i := len(msgs) - 1; i >= after; i-- {
			for _, to := range msgs[i].To {
				if strings.EqualFold(to, email) {
					if c := smtptest.CodeFrom(msgs[i]); c != "" {
						return c
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mail with a code reached %s", email)
		}
		s.Wait(t, len(msgs)+1, time.Until(deadline))
	}
}

// sendAndRead asks for a code and returns it, read from the mail.
func (i *instance) sendAndRead(t *testing.T, s *smtptest.Server, email, project string) string {
	t.Helper()
	n := len(s.Messages())
	if r := i.send(t, "v1", email, project); r.Status != 200 {
		t.Fatalf("send-code %s: %d %s", project, r.Status, r.Body)
	}
	norm, err := authd.NormalizeEmail(email)
	if err != nil {
		t.Fatal(err)
	}
	ascii, _ := authd.ASCIIEmail(norm)
	return mailCode(t, s, ascii, n)
}

// wrongCode returns a 6-digit code other than code.
func wrongCode(code string, i int) string {
	for {
		c := fmt.Sprintf("%06d", (i*7919+13)%1000000)
		if c != code {
			return c
		}
		i++
	}
}

// hideUsers renames the users table away, as if the database had lost it,
// and returns the function that puts it back.
func hideUsers(t *testing.T, db string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE auth_users RENAME TO auth_users_hidden`); err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	return func() {
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `ALTER TABLE auth_users_hidden RENAME TO auth_users`); err != nil {
			t.Fatal(err)
		}
	}
}
