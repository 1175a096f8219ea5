package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/testenv"
)

// The allocation budgets of the request paths: what one request costs
// authd's handler (access line and metrics on, every store call real:
// Redis and PostgreSQL; the test's own request and recorder included),
// counted by testing.AllocsPerRun, which unlike a time does not depend on
// the machine. Measured: 151 and 157 (155 and 163 before string fields
// were read without a second json.Unmarshal; 197 and 208 before issue
// 12's work). A change that makes a path much dearer fails here; one
// that makes it cheaper should lower its budget.
var allocBudgets = map[string]float64{
	"send-code v1":   175,
	"verify-code v1": 180,
}

func TestAllocBudgets(t *testing.T) {
	prefix := "allocs-" + randHex(4) + ":"
	dropRedisPrefix(t, testenv.RedisURL(t), prefix)
	env := map[string]string{
		"DATABASE_URL": scratchDatabase(t), "REDIS_URL": testenv.RedisURL(t), "REDIS_KEY_PREFIX": prefix,
		"MAIL_BACKEND": "log", "SECRET_KEY": testSecret, "AUTHD_MASTER_KEY": randHex(32), "AUTHD_DATA_DIR": t.TempDir(),
		"AUTHD_ISSUER": testIssuer, "OTP_RESEND_SECONDS": "0", "LIMIT_SEND_CODE_PER_IP": "0", "LIMIT_VERIFY_CODE_PER_IP": "0",
		"LIMIT_CODES_PER_ADDRESS": "0", "LIMIT_FAILURES_PER_ADDRESS": "0", "LIMIT_MAILS_TOTAL": "0",
	}
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	mail := &captureSender{codes: map[string]string{}}
	a, err := newApp(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), overrides{sender: mail})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	waitReady(t, a.handler)

	const runs = 200
	serve := func(path, body string, want int) {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, r)
		if w.Code != want {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	email := func(i int) string { return "alloc" + strconv.Itoa(i) + "@example.com" }

	// send-code, the mail workers stopped: the request's cost alone.
	i := 0
	send := testing.AllocsPerRun(runs, func() {
		serve("/api/v1/auth/send-code", `{"email":"`+email(i)+`","project_id":"shop"}`, 200)
		i++
	})

	// The codes to verify: the workers deliver what the sends queued, and
	// stop again.
	a.worker.Start()
	for deadline := time.Now().Add(30 * time.Second); mail.n.Load() < int64(i); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d codes delivered", mail.n.Load(), i)
		}
	}
	a.worker.Close(context.Background())
	j := 0
	verify := testing.AllocsPerRun(runs, func() {
		e := email(j)
		serve("/api/v1/auth/verify-code", `{"email":"`+e+`","project_id":"shop","code":"`+mail.code(e)+`"}`, 200)
		j++
	})

	for name, got := range map[string]float64{"send-code v1": send, "verify-code v1": verify} {
		t.Logf("%s: %.0f allocations a request (budget %.0f)", name, got, allocBudgets[name])
		if got > allocBudgets[name] {
			t.Errorf("%s: %.0f allocations a request, over its budget of %.0f", name, got, allocBudgets[name])
		}
	}
}

// waitReady polls the handler's readiness endpoint: the database step of
// start-up (migrations, keys) runs in the background.
func waitReady(t *testing.T, h http.Handler) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/health/ready", nil))
		if w.Code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %d %s", w.Code, w.Body)
		}
	}
}
