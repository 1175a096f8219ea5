package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
)

// opsFlow answers what its fields say.
type opsFlow struct {
	sendErr   error
	verifyErr error
}

func (*opsFlow) Delivery(context.Context, string) (authd.Delivery, error) {
	return authd.Delivery{}, &authd.Error{Code: authd.ENOTFOUND, Message: "Delivery not found"}
}

func (f *opsFlow) SendCode(ctx context.Context, req authd.SendRequest) (authd.SendResult, error) {
	return authd.SendResult{ExpiresIn: time.Minute}, f.sendErr
}

func (f *opsFlow) VerifyCode(ctx context.Context, req authd.VerifyRequest) (authd.VerifyResult, error) {
	if f.verifyErr != nil {
		return authd.VerifyResult{}, f.verifyErr
	}
	return authd.VerifyResult{Proof: authd.Proof{Email: req.Email, ProjectID: req.ProjectID, Verified: true, Signature: strings.Repeat("ab", 32)}}, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func doReq(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.7:5555"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestReadiness(t *testing.T) {
	var dbErr error
	var mu sync.Mutex
	ready := &Readiness{Timeout: 50 * time.Millisecond, Checks: []Check{
		{Name: "database", Check: func(ctx context.Context) error { mu.Lock(); defer mu.Unlock(); return dbErr }},
		{Name: "redis", Check: func(ctx context.Context) error {
			<-ctx.Done() // a Redis that hangs: the timeout must answer
			return ctx.Err()
		}},
		{Name: "mail", Optional: true, Check: func(ctx context.Context) error { return errors.New("behind") }},
	}}
	h := New(Options{ProjectName: "P", Flow: &opsFlow{}, Logger: slog.New(slog.DiscardHandler), Readiness: ready})
	get := func() (int, ReadyBody) {
		t.Helper()
		start := time.Now()
		w := doReq(t, h, "GET", "/api/v1/health/ready", "")
		if d := time.Since(start); d > time.Second {
			t.Fatalf("readiness took %v: the check timeout did not hold", d)
		}
		var b ReadyBody
		if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		return w.Code, b
	}

	// Before start-up is done: not ready, auth endpoints 503, liveness 200.
	code, b := get()
	if code != 503 || b.Status != "not_ready" || b.Checks["startup"] != "starting" || b.Checks["redis"] != "down" || b.Checks["database"] != "ok" || b.Checks["mail"] != "degraded" {
		t.Fatalf("starting: %d %+v", code, b)
	}
	for _, p := range []string{"/api/v1/auth/send-code", "/api/v2/auth/verify-code"} {
		w := doReq(t, h, "POST", p, `{"email":"a@example.com","project_id":"p","code":"123456"}`)
		if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), msgUnavailable) {
			t.Fatalf("%s while starting: %d %s", p, w.Code, w.Body)
		}
	}
	if w := doReq(t, h, "GET", "/api/v1/health", ""); w.Code != 200 {
		t.Fatalf("liveness while starting: %d", w.Code)
	}

	ready.MarkStarted()
	ready.Checks[1].Check = func(ctx context.Context) error { return nil }
	code, b = get()
	if code != 200 || b.Status != "ready" || b.Checks["redis"] != "ok" || b.Checks["mail"] != "degraded" {
		t.Fatalf("started: %d %+v", code, b)
	}
	if _, ok := b.Checks["startup"]; ok {
		t.Fatalf("startup still reported: %+v", b)
	}
	if w := doReq(t, h, "POST", "/api/v1/auth/send-code", `{"email":"a@example.com","project_id":"p"}`); w.Code != 200 {
		t.Fatalf("send-code once started: %d %s", w.Code, w.Body)
	}

	mu.Lock()
	dbErr = authd.Unavailable("user store", errors.New("dial tcp 10.0.0.1:5432: connection refused"))
	mu.Unlock()
	code, b = get()
	if code != 503 || b.Checks["database"] != "down" {
		t.Fatalf("database down: %d %+v", code, b)
	}
	mu.Lock()
	dbErr = nil
	mu.Unlock()

	ready.MarkDraining()
	code, b = get()
	if code != 503 || b.Checks["shutdown"] != "draining" {
		t.Fatalf("draining: %d %+v", code, b)
	}
	// Draining refuses nothing by itself: in-flight and late requests are
	// still answered while the balancer catches up.
	if w := doReq(t, h, "POST", "/api/v1/auth/send-code", `{"email":"a@example.com","project_id":"p"}`); w.Code != 200 {
		t.Fatalf("send-code while draining: %d", w.Code)
	}
}

func TestReadinessIsInOpenAPI(t *testing.T) {
	h := New(Options{ProjectName: "P", Flow: &opsFlow{}, Logger: slog.New(slog.DiscardHandler)})
	w := doReq(t, h, "GET", "/api/v1/openapi.json", "")
	if !strings.Contains(w.Body.String(), `"/api/v1/health/ready"`) {
		t.Fatal("the readiness route is not in the OpenAPI document")
	}
	if w := doReq(t, h, "GET", "/api/v1/health/ready", ""); w.Code != 200 {
		t.Fatalf("no Readiness configured: %d", w.Code)
	}
}

func TestAccessLog(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	flow := &opsFlow{}
	h := New(Options{ProjectName: "P", Flow: flow, Logger: log, Observe: &Observer{Log: log}})

	w := doReq(t, h, "POST", "/api/v1/auth/verify-code", `{"email":"Ana.Maria@Example.com","project_id":"shop","code":"482915"}`, "X-Request-ID", "req-abc-123")
	if w.Code != 200 || w.Header().Get(RequestIDHeader) != "req-abc-123" {
		t.Fatalf("verify: %d, request id echoed %q", w.Code, w.Header().Get(RequestIDHeader))
	}
	// A request id that could forge a line or carry a payload is replaced.
	w2 := doReq(t, h, "GET", "/nope", "", "X-Request-ID", "x\" injected=1")
	made := w2.Header().Get(RequestIDHeader)
	if len(made) != 32 || strings.Contains(made, "inject") {
		t.Fatalf("made request id %q", made)
	}
	flow.sendErr = authd.RateLimited("cooldown", 30*time.Second)
	doReq(t, h, "POST", "/api/v2/auth/send-code", `{"email":"bob@example.org","project_id":"shop"}`)

	lines := logs.lines(t)
	var access []map[string]any
	for _, l := range lines {
		if l["msg"] == "request" {
			access = append(access, l)
		}
	}
	if len(access) != 3 {
		t.Fatalf("want 3 access lines, got %d: %v", len(access), lines)
	}
	a := access[0]
	want := map[string]any{"request_id": "req-abc-123", "method": "POST", "route": "POST /api/v1/auth/verify-code",
		"status": float64(200), "ip": "192.0.2.7", "email": "a***@example.com", "outcome": "success"}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("access line %s = %v, want %v (%v)", k, a[k], v, a)
		}
	}
	if _, ok := a["duration_ms"].(float64); !ok {
		t.Errorf("no duration: %v", a)
	}
	if access[1]["route"] != "unmatched" || access[1]["status"] != float64(404) || access[1]["request_id"] != made {
		t.Errorf("404 line: %v", access[1])
	}
	if access[2]["outcome"] != "limited" || access[2]["limit"] != "cooldown" || access[2]["status"] != float64(429) {
		t.Errorf("429 line: %v", access[2])
	}
	all := logs.b.String()
	for _, secret := range []string{"482915", "Ana.Maria", "ana.maria", "bob@", strings.Repeat("ab", 32)} {
		if strings.Contains(all, secret) {
			t.Errorf("log holds %q:\n%s", secret, all)
		}
	}
}

func TestAccessLogRecordsPanicAs500(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	h := New(Options{ProjectName: "P", Flow: &panicFlow{}, Logger: log, Observe: &Observer{Log: log}})
	w := doReq(t, h, "POST", "/api/v1/auth/send-code", `{"email":"a@example.com","project_id":"p"}`)
	if w.Code != 500 {
		t.Fatalf("status %d", w.Code)
	}
	found := false
	for _, l := range logs.lines(t) {
		if l["msg"] == "request" && l["status"] == float64(500) {
			found = true
		}
	}
	if !found {
		t.Fatal("no access line with status 500 for a panic")
	}
}

type panicFlow struct{ opsFlow }

func (*panicFlow) SendCode(context.Context, authd.SendRequest) (authd.SendResult, error) {
	panic("boom")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, reg)
	flow := &opsFlow{}
	h := New(Options{ProjectName: "P", Flow: flow, Logger: slog.New(slog.DiscardHandler), Observe: &Observer{Metrics: m}, ServeMetrics: true})
	send := `{"email":"a@example.com","project_id":"p"}`
	verify := `{"email":"a@example.com","project_id":"p","code":"123456"}`
	doReq(t, h, "POST", "/api/v1/auth/send-code", send)
	doReq(t, h, "POST", "/api/v1/auth/send-code", send)
	doReq(t, h, "POST", "/api/v1/auth/verify-code", verify)
	flow.verifyErr = authd.CodeRefused(authd.CodeWrong)
	doReq(t, h, "POST", "/api/v1/auth/verify-code", verify)
	flow.verifyErr = authd.CodeRefused(authd.CodeBurnt)
	doReq(t, h, "POST", "/api/v2/auth/verify-code", verify)
	flow.verifyErr = authd.ErrInvalidCode
	doReq(t, h, "POST", "/api/v2/auth/verify-code", verify)
	flow.verifyErr = authd.RateLimited("failures_per_address", time.Minute)
	doReq(t, h, "POST", "/api/v1/auth/verify-code", verify)
	flow.sendErr = authd.RateLimited("send_per_ip", time.Minute)
	doReq(t, h, "POST", "/api/v1/auth/send-code", send)
	doReq(t, h, "GET", "/does/not/exist", "")

	w := doReq(t, h, "GET", "/metrics", "")
	if w.Code != 200 {
		t.Fatalf("/metrics: %d", w.Code)
	}
	body := w.Body.String()
	for _, line := range []string{
		`authd_http_requests_total{route="POST /api/v1/auth/send-code",status="200"} 2`,
		`authd_http_requests_total{route="POST /api/v1/auth/send-code",status="429"} 1`,
		`authd_http_requests_total{route="POST /api/v1/auth/verify-code",status="401"} 1`,
		`authd_http_requests_total{route="unmatched",status="404"} 1`,
		`authd_http_request_duration_seconds_count{route="POST /api/v1/auth/send-code",status="200"} 2`,
		`authd_codes_sent_total 2`,
		`authd_verifications_total{outcome="success"} 1`,
		`authd_verifications_total{outcome="wrong"} 1`,
		`authd_verifications_total{outcome="burnt"} 1`,
		`authd_verifications_total{outcome="invalid"} 1`,
		`authd_verifications_total{outcome="expired"} 0`,
		`authd_verifications_total{outcome="limited"} 1`,
		`authd_rate_limit_rejections_total{limit="failures_per_address"} 1`,
		`authd_rate_limit_rejections_total{limit="send_per_ip"} 1`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if strings.Contains(body, "does/not/exist") || strings.Contains(body, "a@example.com") {
		t.Error("a caller's path or address became a label")
	}
	// Every 401 keeps the one body, whatever the reason.
	flow.verifyErr = authd.CodeRefused(authd.CodeExpired)
	w = doReq(t, h, "POST", "/api/v1/auth/verify-code", verify)
	if w.Code != 401 || w.Body.String() != `{"detail":"Invalid or expired verification code"}` {
		t.Fatalf("expired: %d %s", w.Code, w.Body)
	}
	if !errors.Is(authd.CodeRefused(authd.CodeWrong), authd.ErrInvalidCode) {
		t.Fatal("a refusal with a reason does not match ErrInvalidCode")
	}
}

func TestDocsPageEmbedded(t *testing.T) {
	h := New(Options{ProjectName: "P", Flow: &opsFlow{}, Logger: slog.New(slog.DiscardHandler)})
	w := doReq(t, h, "GET", "/docs", "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("/docs: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-eval") {
		t.Fatalf("/docs CSP %q", csp)
	}
	page := w.Body.String()
	// Every asset the page names is served from the binary, none from
	// elsewhere.
	for _, ref := range []string{"/docs/assets/swagger-ui/swagger-ui.css", "/docs/assets/swagger-ui/swagger-ui-bundle.js", "/docs/assets/init.js", "/docs/assets/swagger-ui/favicon-32x32.png"} {
		if !strings.Contains(page, `"`+ref+`"`) {
			t.Errorf("the page does not use %s", ref)
		}
		a := doReq(t, h, "GET", ref, "")
		if a.Code != 200 || a.Body.Len() < 100 {
			t.Errorf("%s: %d, %d bytes", ref, a.Code, a.Body.Len())
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page loads something from another host")
	}
	if w := doReq(t, h, "GET", "/docs/assets/", ""); w.Code != 404 {
		t.Errorf("directory listing: %d", w.Code)
	}
}

func TestWithRequestID(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(WithRequestID(slog.NewJSONHandler(logs, nil)))
	flow := &loggingFlow{log: log}
	h := New(Options{ProjectName: "P", Flow: flow, Logger: log, Observe: &Observer{Log: log}})
	doReq(t, h, "POST", "/api/v1/auth/send-code", `{"email":"a@example.com","project_id":"p"}`, "X-Request-ID", "rid-7")
	n := 0
	for _, l := range logs.lines(t) {
		if l["request_id"] != "rid-7" {
			t.Errorf("line without the request's id: %v", l)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("want the flow's line and the access line, got %d", n)
	}
	if strings.Count(logs.b.String(), "rid-7") != 2 {
		t.Fatalf("the id is repeated within a line:\n%s", logs.b.String())
	}
}

// loggingFlow logs with the request's context, as the service does.
type loggingFlow struct {
	opsFlow
	log *slog.Logger
}

func (f *loggingFlow) SendCode(ctx context.Context, req authd.SendRequest) (authd.SendResult, error) {
	f.log.WarnContext(ctx, "from the flow")
	return authd.SendResult{}, nil
}

// A flood of readiness probes costs the stores one round of checks per
// CacheFor: probes at once wait for the round under way, later ones within
// CacheFor get its results; draining is never cached.
func TestReadinessCached(t *testing.T) {
	var calls atomic.Int64
	r := &Readiness{CacheFor: 300 * time.Millisecond, Checks: []Check{{Name: "database", Check: func(context.Context) error {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return nil
	}}}}
	r.MarkStarted()
	h := New(Options{ProjectName: "P", Logger: slog.New(slog.DiscardHandler), Readiness: r})
	probe := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/health/ready", nil))
		return w.Code
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if code := probe(); code != 200 {
				t.Errorf("probe: %d", code)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("50 probes at once ran the checks %d times, want 1", n)
	}
	r.MarkDraining()
	if code := probe(); code != 503 {
		t.Fatalf("draining, within CacheFor: %d, want 503 at once", code)
	}
	time.Sleep(350 * time.Millisecond)
	probe()
	if n := calls.Load(); n != 2 {
		t.Fatalf("after CacheFor the checks ran %d times in all, want 2", n)
	}
}
