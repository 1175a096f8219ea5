package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// The delivery tests of issue 3: every one through run(), real Redis and
// PostgreSQL, and a real SMTP server over TCP.

// fastRetries makes retries quick enough for a test: the first within
// 100 ms, none more than 500 ms apart.
func fastRetries(env map[string]string) {
	env["MAIL_RETRY_BACKOFF"] = "100ms"
	env["MAIL_RETRY_MAX"] = "500ms"
}

// sendV2 asks for a code over /api/v2 and returns the delivery id.
func (i *instance) sendV2(t *testing.T, email, project string) string {
	t.Helper()
	r := i.send(t, "v2", email, project)
	if r.Status != 200 {
		t.Fatalf("v2 send-code: %d %s", r.Status, r.Body)
	}
	id, _ := r.json(t)["delivery_id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("delivery_id %q is not 128 bits in hex: %s", id, r.Body)
	}
	return id
}

// delivery reads GET /api/v2/auth/deliveries/{id}.
func (i *instance) delivery(t *testing.T, id string) (int, map[string]any) {
	t.Helper()
	resp, err := client.Get(i.URL + "/api/v2/auth/deliveries/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// waitStatus polls the delivery until it has status, and returns its body.
func (i *instance) waitStatus(t *testing.T, id, status string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, m := i.delivery(t, id)
		if code == 200 && m["status"] == status {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %s: %d %v, want status %q", id, code, m, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closedPort returns a local port nothing listens on: an SMTP server that
// is down (connections refused).
func closedPort(t *testing.T) int { return freePort(t) }

func TestDeliveryHappyPath(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	inst := start(t, p.Env)
	email := uniqueEmail("happy")
	id := inst.sendV2(t, email, "shop")
	code := mailCode(t, p.SMTP, email, 0)
	msgs := p.SMTP.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ParseErr != nil {
		t.Fatal(m.ParseErr)
	}
	for h, want := range map[string]string{
		"From":           `"Authd Tests" <noreply@authd.test>`,
		"To":             "<" + email + ">",
		"Auto-Submitted": "auto-generated",
	} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	for _, h := range []string{"Message-Id", "Date", "Subject"} {
		if m.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type %q, want multipart/alternative", ct)
	}
	if !strings.Contains(m.Text, code) || !strings.Contains(m.HTML, code) {
		t.Errorf("the code is not in both parts:\ntext: %s\nhtml: %s", m.Text, m.HTML)
	}
	body := inst.waitStatus(t, id, "sent", 5*time.Second)
	if body["attempts"] != 1.0 {
		t.Errorf("attempts %v, want 1", body["attempts"])
	}
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("the mailed code does not verify: %d %s", r.Status, r.Body)
	}
	// The status names no address, and the v1 answer is unchanged.
	if _, b := inst.delivery(t, id); strings.Contains(fmt.Sprint(b), "happy") {
		t.Errorf("delivery status reveals the address: %v", b)
	}
	if r := inst.send(t, "v1", uniqueEmail("v1"), "shop"); string(r.Body) != `{"message":"Verification code sent successfully"}` {
		t.Errorf("v1 send-code body changed: %s", r.Body)
	}
}

func TestDeliveryUnknownID(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	inst := start(t, p.Env)
	for _, id := range []string{strings.Repeat("0", 32), "not-an-id", strings.Repeat("A", 32)} {
		if code, body := inst.delivery(t, id); code != 404 {
			t.Errorf("GET deliveries/%s: %d %v, want 404", id, code, body)
		}
	}
}

func TestDeliverySMTPDownThenUp(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	port := closedPort(t)
	p.Env["SMTP_PORT"] = strconv.Itoa(port)
	fastRetries(p.Env)
	inst := start(t, p.Env)
	email := uniqueEmail("down")
	began := time.Now()
	id := inst.sendV2(t, email, "shop") // 200 although SMTP is down
	st := inst.waitStatus(t, id, "retrying", 5*time.Second)
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st["next_attempt_at"])); err != nil {
		t.Errorf("retrying without a next_attempt_at: %v", st)
	}
	time.Sleep(time.Until(began.Add(10 * time.Second)))
	up := smtptest.Start(t, smtptest.WithAddr("127.0.0.1:"+strconv.Itoa(port)))
	code := mailCode(t, up, email, 0)
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("code mailed after the outage does not verify: %d %s", r.Status, r.Body)
	}
	inst.waitStatus(t, id, "sent", 5*time.Second)
	if n := len(up.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestDeliveryReplacedCodeNotSent(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	port := closedPort(t)
	p.Env["SMTP_PORT"] = strconv.Itoa(port)
	p.Env["OTP_RESEND_SECONDS"] = "0"
	fastRetries(p.Env)
	inst := start(t, p.Env)
	email := uniqueEmail("replaced")
	old := inst.sendV2(t, email, "shop")
	inst.waitStatus(t, old, "retrying", 5*time.Second)
	newer := inst.sendV2(t, email, "shop")
	up := smtptest.Start(t, smtptest.WithAddr("127.0.0.1:"+strconv.Itoa(port)))
	inst.waitStatus(t, newer, "sent", 10*time.Second)
	inst.waitStatus(t, old, "superseded", 10*time.Second)
	msgs := up.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want only the newer code's", len(msgs))
	}
	if r := inst.verify(t, "v1", email, "shop", smtptest.CodeFrom(msgs[0])); r.Status != 200 {
		t.Fatalf("the mailed (newer) code does not verify: %d %s", r.Status, r.Body)
	}
}

func TestDeliveryTemporaryFailuresThenSuccess(t *testing.T) {
	t.Parallel()
	p := newProduction(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		if n <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, try again later"}
		}
		return nil
	}))
	// The default backoff: the first retry within 2 s, the second within 4.
	inst := start(t, p.Env)
	email := uniqueEmail("greylist")
	id := inst.sendV2(t, email, "shop")
	code := mailCode(t, p.SMTP, email, 0)
	st := inst.waitStatus(t, id, "sent", 5*time.Second)
	if st["attempts"] != 3.0 {
		t.Errorf("attempts %v, want 3", st["attempts"])
	}
	time.Sleep(200 * time.Millisecond)
	if n, a := len(p.SMTP.Messages()), p.SMTP.Attempts(); n != 1 || a != 3 {
		t.Fatalf("%d messages after %d attempts, want 1 after 3", n, a)
	}
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}

func TestDeliveryPermanentFailureNotRetried(t *testing.T) {
	t.Parallel()
	p := newProduction(t, smtptest.WithReply(func(int) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}))
	fastRetries(p.Env)
	inst := start(t, p.Env)
	id := inst.sendV2(t, uniqueEmail("refused"), "shop")
	st := inst.waitStatus(t, id, "failed", 5*time.Second)
	if st["attempts"] != 1.0 {
		t.Errorf("attempts %v, want 1", st["attempts"])
	}
	// With retries 100 ms apart, a retry would have come by now.
	time.Sleep(time.Second)
	if a := p.SMTP.Attempts(); a != 1 {
		t.Fatalf("%d attempts at a 5xx, want 1", a)
	}
	if !strings.Contains(inst.Logs.String(), "mail refused for good") {
		t.Errorf("the permanent failure is not logged")
	}
}

// TestDeliveryProcessKilledMidSend: the authd process is killed (SIGKILL)
// in the middle of a send, its job claimed and not acknowledged; another
// instance on the same Redis delivers the mail once the claim has lapsed.
func TestDeliveryProcessKilledMidSend(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	hang := smtptest.Start(t, smtptest.WithDelay(time.Minute))
	envA := cloneEnv(p.Env)
	envA["SMTP_PORT"] = strconv.Itoa(hang.Port())
	envA["MAIL_CLAIM_TIMEOUT"] = "1s"
	cmd, baseA, _ := startBinary(t, buildAuthd(t), envA)
	a := &instance{URL: baseA}
	email := uniqueEmail("killed")
	id := a.sendV2(t, email, "shop")
	waitAttempts(t, hang, 1)
	cmd.Process.Kill()
	cmd.Wait()

	envB := cloneEnv(p.Env) // the working SMTP server
	envB["MAIL_CLAIM_TIMEOUT"] = "1s"
	b := start(t, envB)
	began := time.Now()
	code := mailCode(t, p.SMTP, email, 0)
	took := time.Since(began)
	t.Logf("taken over and delivered %v after instance B started", took)
	// Within the visibility timeout (1 s here; lapsed claims are looked
	// for every timeout/4), with room for a loaded machine.
	if took > 4*time.Second {
		t.Errorf("the dead instance's job took %v to be taken over, claim timeout 1s", took)
	}
	b.waitStatus(t, id, "sent", 5*time.Second)
	if r := b.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if n := len(p.SMTP.Messages()); n != 1 {
		t.Errorf("%d messages from instance B, want 1", n)
	}
}

// TestDeliveryShutdownHandsOver: an instance stopped gracefully while a
// send hangs cuts it after SHUTDOWN_TIMEOUT and releases the job: the next
// instance delivers it at once, not after its 30 s claim timeout.
func TestDeliveryShutdownHandsOver(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	hang := smtptest.Start(t, smtptest.WithDelay(time.Minute))
	envA := cloneEnv(p.Env)
	envA["SMTP_PORT"] = strconv.Itoa(hang.Port())
	envA["SHUTDOWN_TIMEOUT"] = "200ms"
	a := start(t, envA)
	email := uniqueEmail("handover")
	id := a.sendV2(t, email, "shop")
	waitAttempts(t, hang, 1)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b := start(t, p.Env) // MAIL_CLAIM_TIMEOUT: the default 30 s
	began := time.Now()
	mailCode(t, p.SMTP, email, 0)
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("handed over after %v: the job was not released", d)
	}
	b.waitStatus(t, id, "sent", 5*time.Second)
}

// waitAttempts waits until srv has seen n DATA commands.
func waitAttempts(t *testing.T, srv *smtptest.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); srv.Attempts() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d send attempts reached the SMTP server", srv.Attempts(), n)
		}
	}
}

// TestDeliveryNoPlaintextInRedis: while a mail waits in the queue, no key,
// hash field or stream entry under the deployment's prefix holds the code
// or the address.
func TestDeliveryNoPlaintextInRedis(t *testing.T) {
	t.Parallel()
	p := newProduction(t)
	port := closedPort(t)
	p.Env["SMTP_PORT"] = strconv.Itoa(port)
	fastRetries(p.Env)
	inst := start(t, p.Env)
	email := uniqueEmail("plain")
	inst.sendV2(t, email, "shop")

	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	var dump strings.Builder
	var streamEntries int
	keys, err := rdb.Keys(ctx, p.Env["REDIS_KEY_PREFIX"]+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		dump.WriteString(k + "\n")
		switch rdb.Type(ctx, k).Val() {
		case "string":
			dump.WriteString(rdb.Get(ctx, k).Val() + "\n")
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "stream":
			for _, e := range rdb.XRange(ctx, k, "-", "+").Val() {
				streamEntries++
				for f, v := range e.Values {
					dump.WriteString(f + "=" + fmt.Sprint(v) + "\n")
				}
			}
		case "zset": // a partition's claims, once the worker has tried the mail
			for _, m := range rdb.ZRange(ctx, k, 0, -1).Val() {
				dump.WriteString(m + "\n")
			}
		case "none": // a limit's bucket that filled up again since KEYS listed it
		default:
			t.Errorf("key %s of unexpected type %s", k, rdb.Type(ctx, k).Val())
		}
	}
	if streamEntries != 1 {
		t.Fatalf("%d stream entries, want the one queued job", streamEntries)
	}
	up := smtptest.Start(t, smtptest.WithAddr("127.0.0.1:"+strconv.Itoa(port)))
	code := mailCode(t, up, email, 0)
	for _, secret := range []string{code, email, strings.SplitN(email, "@", 2)[0]} {
		if strings.Contains(dump.String(), secret) {
			t.Errorf("Redis holds %q in the clear:\n%s", secret, dump.String())
		}
	}
	// Once sent, the job (sealed code included) is gone from Redis.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n := 0
		for _, k := range keys {
			if rdb.Type(ctx, k).Val() == "stream" {
				n += int(rdb.XLen(ctx, k).Val())
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still in the streams after the mail was sent", n)
		}
	}
}

// TestDeliveryBurstSlowSMTP: 1,000 send-codes against an SMTP server that
// takes 200 ms per message all answer 200 at once, and every mail arrives.
func TestDeliveryBurstSlowSMTP(t *testing.T) {
	t.Parallel()
	const n = 1000
	p := newProduction(t, smtptest.WithDelay(200*time.Millisecond))
	for _, k := range []string{"LIMIT_SEND_CODE_PER_IP", "LIMIT_CODES_PER_ADDRESS", "LIMIT_FAILURES_PER_ADDRESS", "LIMIT_VERIFY_CODE_PER_IP"} {
		p.Env[k] = "0"
	}
	p.Env["MAIL_WORKERS"] = "128"
	p.Env["LOG_LEVEL"] = "warn"
	inst := start(t, p.Env)
	run := randHex(4)
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			began := time.Now()
			r := inst.send(t, "v1", fmt.Sprintf("burst%d-%s@example.com", i, run), "shop")
			lat[i] = time.Since(began)
			if r.Status != 200 {
				t.Errorf("send-code %d: %d %s", i, r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	t.Logf("send-code latency: p50 %v, p99 %v, max %v", lat[n/2], lat[n*99/100], lat[n-1])
	// A send-code that waited for its mail would take at least 200 ms.
	if lat[n/2] >= 200*time.Millisecond || lat[n*99/100] >= time.Second {
		t.Errorf("send-code waits for SMTP: p50 %v, p99 %v", lat[n/2], lat[n*99/100])
	}
	msgs := p.SMTP.Wait(t, n, 30*time.Second)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.To[0]] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct recipients among %d messages, want %d", len(seen), len(msgs), n)
	}
}
