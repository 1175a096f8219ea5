package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// BenchmarkSoak runs the real binary on PostgreSQL and a real 3+3 Redis
// Cluster (AUTHD_SOAK_REDIS=single: the test Redis instead), delivering
// every mail to a real SMTP sink, under mixed load: each session is a
// send-code, the mail's arrival, and a verify-code with the code it
// carried. First it measures the most sessions per second
// AUTHD_SOAK_CONNS connections (default 64) sustain; then it offers half
// of that, at a steady rate, for AUTHD_SOAK_DURATION (default 10m), and
// prints a line a minute (a tenth of the run, if shorter). It fails unless, after the first tenth (the
// warm-up), authd's RSS grew less than 10 %, its goroutines stayed flat,
// no minute's p99 was more than twice the median minute's (plus 5 ms),
// and every session ended in a verified code: nothing refused, every mail
// delivered. Not part of go test ./... (a benchmark; README, "Speed"):
//
//	go test -run '^$' -bench Soak -benchtime 1x -timeout 30m ./cmd/authd
func BenchmarkSoak(b *testing.B) {
	duration := envDuration(b, "AUTHD_SOAK_DURATION", 10*time.Minute)
	conns := envInt(b, "AUTHD_SOAK_CONNS", 64)
	redisURL, cluster := testenv.RedisURL(b), "false"
	if os.Getenv("AUTHD_SOAK_REDIS") != "single" {
		redisURL, cluster = testenv.StartCluster(b).URL(), "true"
	}
	codes := newCodeBox()
	sink := smtptest.Start(b, smtptest.WithHandler(func(m smtptest.Message) {
		for _, to := range m.To {
			codes.put(to, smtptest.CodeFrom(m))
		}
	}))
	metricsPort := freePort(b)
	env := map[string]string{
		"DATABASE_URL": scratchDatabase(b), "REDIS_URL": redisURL, "REDIS_CLUSTER": cluster,
		"REDIS_KEY_PREFIX": "soak-" + randHex(4) + ":",
		"SMTP_HOST":        sink.Host(), "SMTP_PORT": strconv.Itoa(sink.Port()), "SMTP_TLS": "false",
		"SECRET_KEY": testSecret, "AUTHD_MASTER_KEY": randHex(32), "AUTHD_ISSUER": testIssuer,
		"LOG_LEVEL": "warn", "LOG_FORMAT": "json", "METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(metricsPort),
		// The load is one IP and few projects: the limits off.
		"LIMIT_SEND_CODE_PER_IP": "0", "LIMIT_VERIFY_CODE_PER_IP": "0", "LIMIT_CODES_PER_ADDRESS": "0",
		"LIMIT_FAILURES_PER_ADDRESS": "0", "LIMIT_MAILS_TOTAL": "0", "OTP_RESEND_SECONDS": "0",
	}
	cmd, base, logs := startBinary(b, buildAuthd(b), env)
	s := &soak{base: base, metrics: "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics", pid: cmd.Process.Pid, codes: codes,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns * 2}}}

	maxRate := s.measureMax(b, conns, 20*time.Second)
	rate := maxRate / 2
	b.Logf("soak: %d connections sustain %.0f sessions/s (send + mail + verify); offering %.0f/s for %v", conns, maxRate, rate, duration)
	minutes := s.run(b, rate, conns, duration, min(time.Minute, duration/10))
	if err := s.judge(minutes); err != nil {
		b.Fatalf("soak: %v\nauthd log (warnings and errors):\n%s", err, logs.String())
	}
	b.ReportMetric(rate, "sessions/s")
}

// soak is the load against one authd process.
type soak struct {
	base, metrics string
	pid           int
	client        *http.Client
	codes         *codeBox
	seq           atomic.Int64
}

// minute is what one interval of the soak saw.
type minute struct {
	at                time.Duration
	sessions, errors  int
	behind            int // sessions the rate asked for that no connection was free to start
	sendP50, sendP99  time.Duration
	mailP99           time.Duration // send-code's 200 to the mail in the sink
	verifyP50, verify time.Duration // verify p50, p99
	rssKiB            int
	goroutines        int
	queueAge          float64
}

// session is one user's whole sign-in: it returns each step's latency.
func (s *soak) session(ctx context.Context) (send, mail, verify time.Duration, err error) {
	email := fmt.Sprintf("soak-%d-%s@example.com", s.seq.Add(1), randHex(3))
	wait := s.codes.expect(email)
	t0 := time.Now()
	if err := s.post(ctx, "/api/v1/auth/send-code", `{"email":"`+email+`","project_id":"shop"}`); err != nil {
		s.codes.forget(email)
		return 0, 0, 0, fmt.Errorf("send-code: %w", err)
	}
	send = time.Since(t0)
	var code string
	select {
	case code = <-wait:
	case <-time.After(60 * time.Second):
		s.codes.forget(email)
		return send, 0, 0, fmt.Errorf("no mail within 60s")
	case <-ctx.Done():
		return send, 0, 0, ctx.Err()
	}
	mail = time.Since(t0) - send
	t1 := time.Now()
	if err := s.post(ctx, "/api/v1/auth/verify-code", `{"email":"`+email+`","project_id":"shop","code":"`+code+`"}`); err != nil {
		return send, mail, 0, fmt.Errorf("verify-code: %w", err)
	}
	return send, mail, time.Since(t1), nil
}

func (s *soak) post(ctx context.Context, path, body string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", s.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	return nil
}

// measureMax runs conns sessions back to back for d and returns the
// sessions per second they completed. Sessions under way at the end
// finish (a cut request would be counted as authd's failure).
func (s *soak) measureMax(b *testing.B, conns int, d time.Duration) float64 {
	deadline := time.Now().Add(d)
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, _, _, err := s.session(context.WithoutCancel(b.Context())); err != nil {
					if failed.Add(1) <= 3 {
						b.Logf("soak: a session failed while measuring the maximum: %v", err)
					}
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("soak: %d sessions failed while measuring the maximum", failed.Load())
	}
	return float64(done.Load()) / d.Seconds()
}

// run offers rate sessions per second for d, and returns each interval's
// figures. It is an open loop: a slow answer does not slow the offer; up
// to 8 x conns sessions may be under way before one is counted behind.
func (s *soak) run(b *testing.B, rate float64, conns int, d, every time.Duration) []minute {
	type result struct {
		send, mail, verify time.Duration
		err                error
	}
	results := make(chan result, conns*4)
	slots := make(chan struct{}, 8*conns)
	start := time.Now()
	var behind atomic.Int64
	var wg sync.WaitGroup
	go func() { // the open-loop dispatcher: one session every 1/rate
		defer func() { wg.Wait(); close(results) }()
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		for time.Since(start) < d {
			next = next.Add(interval)
			time.Sleep(time.Until(next))
			select {
			case slots <- struct{}{}:
				wg.Go(func() {
					defer func() { <-slots }()
					var r result
					r.send, r.mail, r.verify, r.err = s.session(context.WithoutCancel(b.Context()))
					results <- r
				})
			default:
				behind.Add(1)
			}
		}
	}()
	var out []minute
	var sends, mails, verifies []time.Duration
	cur := minute{}
	flush := func() {
		cur.at = time.Since(start).Round(time.Second)
		cur.sendP50, cur.sendP99 = pct(sends, 50), pct(sends, 99)
		cur.mailP99 = pct(mails, 99)
		cur.verifyP50, cur.verify = pct(verifies, 50), pct(verifies, 99)
		cur.behind = int(behind.Swap(0))
		cur.rssKiB = rssKiB(s.pid)
		cur.goroutines, cur.queueAge = s.gauges()
		b.Logf("soak %6v: %6d sessions, %d errors, %d behind; send p50 %v p99 %v; mail p99 %v; verify p50 %v p99 %v; RSS %.1f MiB; goroutines %d; queue age %.1fs",
			cur.at, cur.sessions, cur.errors, cur.behind, cur.sendP50, cur.sendP99, cur.mailP99, cur.verifyP50, cur.verify,
			float64(cur.rssKiB)/1024, cur.goroutines, cur.queueAge)
		out = append(out, cur)
		cur, sends, mails, verifies = minute{}, sends[:0], mails[:0], verifies[:0]
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-results:
			if !ok {
				if cur.sessions+cur.errors > 0 {
					flush()
				}
				return out
			}
			if r.err != nil {
				cur.errors++
				if cur.errors <= 3 {
					b.Logf("soak: a session failed: %v", r.err)
				}
				continue
			}
			cur.sessions++
			sends, mails, verifies = append(sends, r.send), append(mails, r.mail), append(verifies, r.verify)
		case <-tick.C:
			flush()
		}
	}
}

// judge applies the soak's bar to its intervals: after the warm-up (the
// first tenth), RSS within 10 % of where the warm-up left it and
// goroutines level (the last third's median within 10 %, +10, of the
// first third's); p99 with no trend (the last third's median within
// 1.5x the first third's, +5 ms) and no spike (no interval above 4x the
// median, +5 ms); and no failed session.
func (s *soak) judge(ms []minute) error {
	if len(ms) < 4 {
		return fmt.Errorf("only %d intervals: run longer", len(ms))
	}
	var errs, behind int
	for _, m := range ms {
		errs += m.errors
		behind += m.behind
	}
	warm := max(1, len(ms)/10)
	base, rest := ms[warm-1], ms[warm:]
	if last := rest[len(rest)-1]; last.sessions < rest[0].sessions/2 {
		rest = rest[:len(rest)-1] // the tail: sessions finishing after the offer stopped
	}
	peakRSS := 0
	p99s := make([]time.Duration, len(rest))
	gs := make([]time.Duration, len(rest)) // goroutines, as durations for pct
	for i, m := range rest {
		p99s[i] = max(m.sendP99, m.verify)
		gs[i] = time.Duration(m.goroutines)
		peakRSS = max(peakRSS, m.rssKiB)
	}
	median := func(ds []time.Duration) time.Duration { return pct(ds, 50) }
	third := max(1, len(p99s)/3)
	first, last, all := median(p99s[:third]), median(p99s[len(p99s)-third:]), median(p99s)
	// Goroutines come and go with the requests in flight: what must not
	// grow is their level, the last third's median against the first's.
	gFirst, gLast := int(median(gs[:third])), int(median(gs[len(gs)-third:]))
	worst := slices.Max(p99s)
	const slack = 5 * time.Millisecond
	switch {
	case errs > 0:
		return fmt.Errorf("%d sessions failed (refused, or their mail never came)", errs)
	case behind > 0:
		return fmt.Errorf("%d sessions could not start: authd fell behind half its maximum", behind)
	case float64(peakRSS) > 1.10*float64(base.rssKiB):
		return fmt.Errorf("RSS grew from %d KiB after warm-up to %d KiB (> 10 %%)", base.rssKiB, peakRSS)
	case float64(gLast) > 1.10*float64(gFirst)+10:
		return fmt.Errorf("goroutines grew from a median of %d in the first third to %d in the last", gFirst, gLast)
	case float64(last) > 1.5*float64(first)+float64(slack):
		return fmt.Errorf("p99 rose from a median of %v in the first third to %v in the last", first, last)
	case worst > 4*all+slack:
		return fmt.Errorf("an interval's p99 of %v against a median of %v", worst, all)
	}
	return nil
}

// gauges scrapes authd's goroutine count and mail queue age.
func (s *soak) gauges() (goroutines int, queueAge float64) {
	resp, err := s.client.Get(s.metrics)
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			goroutines = int(f)
		}
		if v, ok := strings.CutPrefix(line, "authd_mail_queue_age_seconds "); ok {
			queueAge, _ = strconv.ParseFloat(v, 64)
		}
	}
	return goroutines, queueAge
}

// rssKiB reads a process's resident set from /proc.
func rssKiB(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			n, _ := strconv.Atoi(strings.Fields(string(v))[0])
			return n
		}
	}
	return -1
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}

// codeBox hands each code the sink receives to the session waiting for it.
type codeBox struct {
	mu      sync.Mutex
	waiting map[string]chan string
}

func newCodeBox() *codeBox { return &codeBox{waiting: map[string]chan string{}} }

func (c *codeBox) expect(email string) <-chan string {
	ch := make(chan string, 1)
	c.mu.Lock()
	c.waiting[email] = ch
	c.mu.Unlock()
	return ch
}

func (c *codeBox) forget(email string) {
	c.mu.Lock()
	delete(c.waiting, email)
	c.mu.Unlock()
}

func (c *codeBox) put(email, code string) {
	c.mu.Lock()
	ch, ok := c.waiting[strings.ToLower(email)]
	delete(c.waiting, strings.ToLower(email))
	c.mu.Unlock()
	if ok {
		ch <- code
	}
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return d
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return n
}
