package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// BenchmarkLoad is the load command of the README's "Speed" section: the
// real binary at its defaults (but the limits, off: one load generator is
// one IP) on PostgreSQL and Redis, every mail delivered to a real SMTP
// sink and every code checked, beside bare net/http servers doing the
// same durable work, in the same run. AUTHD_LOAD_CONNS connections (64)
// make AUTHD_LOAD_N requests (20000) in each phase:
//
//   - send-code, delivered: send-codes to distinct addresses, timed from
//     the first request to the last mail in the sink. The bare server's one
//     script is authd's issue script (the code and its mail job); 16
//     workers read the streams through a consumer group in batches of up
//     to 32, send a text + HTML mail of authd's size over kept-open SMTP
//     connections, and ack and delete each batch.
//   - verify-code, new user: each address's code as its mail carried it
//     (authd) or as issued (bare): a user inserted, a proof signed.
//   - send-code, request path: no mail work beside it. authd's SMTP sink
//     holds each mail (its 16 workers wait on it for the few seconds the
//     phase lasts, far under MAIL_MAX_LAG); the bare server sends none.
//
// AUTHD_LOAD_ENV adds variables to authd's environment ("NAME=value
// NAME=value"), to compare a setting with its default; AUTHD_LOAD_BIN
// runs a binary built elsewhere instead of this tree's (an earlier
// commit's, for a before and after in the same conditions);
// AUTHD_LOAD_INPROCESS=1 runs authd inside the test instead, for
// go test's -cpuprofile and -memprofile (its CPU is then not printed; in
// the profile, -tagfocus=process=authd tells it apart from the load's).
//
// authd's log goes to a file, not a pipe into this process: the bare
// servers log nothing, and a pipe's reader here would be counted in the
// load tool's CPU of authd's phases only.
//
// It prints req/s, delivered/s, p50/p99, errors, authd's CPU per request
// (utime + stime from /proc/PID/stat over the phase), its peak RSS, and
// the ratios to the ceilings; it fails on any error or missing mail.
//
//	go test -run '^$' -bench 'Load$' -benchtime 1x -timeout 20m ./cmd/authd
func BenchmarkLoad(b *testing.B) {
	conns := envInt(b, "AUTHD_LOAD_CONNS", 64)
	n := envInt(b, "AUTHD_LOAD_N", 20000)
	bin := os.Getenv("AUTHD_LOAD_BIN")
	if bin == "" && os.Getenv("AUTHD_LOAD_INPROCESS") != "1" {
		bin = buildAuthd(b)
	}
	opt, err := goredis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	l := &loader{b: b, conns: conns, n: n, rdb: goredis.NewClient(opt),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * conns}}}
	defer l.rdb.Close()
	loadBefore := loadAvg()

	// Pairs of phases run back to back, so that the same noise meets both.
	bareMail := l.bareDelivered()
	send := l.authdSendAndVerify(bin)
	bareVerify := l.bareVerify()
	reqPath := l.authdRequestPath(bin)
	bareReq := l.bareRequestPath()

	rows := []struct {
		name, key   string
		bare, authd phaseResult
		delivered   bool
	}{
		{"send-code, delivered/s (request + mail)", "send-delivered", bareMail, send.send, true},
		{"send-code, request path (req/s)", "send-request", bareReq, reqPath, false},
		{"verify-code, new user (req/s)", "verify", bareVerify, send.verify, false},
	}
	var out strings.Builder
	fmt.Fprintf(&out, "load: %d connections, %d requests a phase, %d CPUs; load average %s before, %s after\n",
		conns, n, runtime.NumCPU(), loadBefore, loadAvg())
	fmt.Fprintf(&out, "%-42s %12s %12s %6s  %-22s %-22s %7s %12s %16s %16s %20s\n", "path", "bare", "authd", "ratio", "bare p50/p99", "authd p50/p99", "errors", "authd CPU/req",
		"machine bare/authd", "Redis bare/authd", "load tool bare/authd")
	failed := 0
	for _, r := range rows {
		bare, got := r.bare.rate(r.delivered), r.authd.rate(r.delivered)
		fmt.Fprintf(&out, "%-42s %12.0f %12.0f %6.2f  %-22s %-22s %7d %10.0fµs %7.0f/%-6.0fµs %7.0f/%-6.0fµs %11.0f/%-6.0fµs\n", r.name, bare, got, got/bare,
			r.bare.latency(), r.authd.latency(), r.bare.errors+r.authd.errors, r.authd.cpuPerRequest(),
			r.bare.perRequest(r.bare.machine), r.authd.perRequest(r.authd.machine), r.bare.perRequest(r.bare.redisCPU), r.authd.perRequest(r.authd.redisCPU),
			r.bare.perRequest(r.bare.self), r.authd.perRequest(r.authd.self))
		failed += r.bare.errors + r.authd.errors
		b.ReportMetric(got, r.key+"/s")
		b.ReportMetric(got/bare, r.key+"-ratio")
	}
	// Where the mail side lags the requests, the last mails go out after
	// the last answer: time in which the load generator idles.
	for _, r := range []phaseResult{bareMail, send.send} {
		d := r.drain
		if d == nil || d.n == 0 {
			continue
		}
		fmt.Fprintf(&out, "%s: %d mails by the last answer (%v), the other %d in %v after it (%.0f/s): machine %.0f%% busy, per mail machine %.0fµs, Redis %.0fµs, load tool %.0fµs",
			r.name, r.early, r.answered.Round(time.Millisecond), d.n, d.delivered.Round(time.Millisecond), d.rate(true),
			100*d.machine.Seconds()/d.delivered.Seconds()/float64(runtime.NumCPU()), d.perRequest(d.machine), d.perRequest(d.redisCPU), d.perRequest(d.self))
		if d.cpu > 0 {
			fmt.Fprintf(&out, ", authd %.0fµs", d.cpuPerRequest())
		}
		out.WriteString("\n")
	}
	fmt.Fprintf(&out, "authd peak RSS: %.1f MiB (send + verify), %.1f MiB (request path)\n",
		float64(send.rssKiB)/1024, float64(reqPath.rssKiB)/1024)
	b.Log("\n" + out.String())
	for _, r := range []phaseResult{bareMail, send.send, send.verify, bareVerify, reqPath, bareReq} {
		if r.firstErr != nil {
			b.Errorf("%s: %d errors, the first: %v", r.name, r.errors, r.firstErr)
		}
	}
	if failed > 0 {
		b.Fatalf("%d errors", failed)
	}
}

// checkpoint has PostgreSQL write out what earlier phases left dirty
// (CHECKPOINT) before a verify-code phase, so that a checkpoint does not
// fall in one phase of the pair and not the other: one cause of the
// verify ratio's swings between runs (0.4 to 2.5 on the same binary; it
// still swings, less often).
func (l *loader) checkpoint() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL(l.b))
	if err != nil {
		l.b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		l.b.Fatalf("CHECKPOINT: %v", err)
	}
}

// loader drives one phase after another.
type loader struct {
	b      *testing.B
	conns  int
	n      int
	client *http.Client
	rdb    *goredis.Client // for Redis's CPU
}

// phaseResult is what one phase measured.
type phaseResult struct {
	name      string
	n, errors int
	firstErr  error
	lat       []time.Duration // each request's, in order of i
	answered  time.Duration   // the first request to the last answer
	early     int             // mails delivered by the last answer (mail phases)
	drain     *phaseResult    // from the last answer to the last mail: the mails delivered after it, the time, and the CPU (mail phases)
	delivered time.Duration   // the first request to the last mail (mail phases)
	cpu       time.Duration   // authd's CPU over the phase (authd phases)
	machine   time.Duration   // every process's CPU over the phase (/proc/stat)
	redisCPU  time.Duration   // Redis's CPU over the phase (INFO cpu)
	self      time.Duration   // this process's CPU over the phase: the load generator and the SMTP sink, and the bare servers in theirs (and authd, with AUTHD_LOAD_INPROCESS)
	rssKiB    int             // authd's peak RSS over the phase
}

func (p phaseResult) rate(delivered bool) float64 {
	d := p.answered
	if delivered {
		d = p.delivered
	}
	if d <= 0 {
		return 0
	}
	return float64(p.n) / d.Seconds()
}

func (p phaseResult) latency() string {
	return fmt.Sprintf("%v / %v", pct(p.lat, 50), pct(p.lat, 99))
}

func (p phaseResult) cpuPerRequest() float64 { return p.perRequest(p.cpu) }

// perRequest is d per request of the phase, in µs.
func (p phaseResult) perRequest(d time.Duration) float64 {
	if p.n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(p.n)
}

// meter measures the whole machine's CPU and Redis's over a phase: what
// the work costs beyond authd's own process (Redis, PostgreSQL, the SMTP
// sink and the load generator share the machine), for authd and the bare
// servers alike.
type meter struct {
	rdb                     *goredis.Client
	machine0, redis0, self0 time.Duration
}

func (l *loader) meter() *meter {
	m := &meter{rdb: l.rdb}
	m.machine0, m.redis0, m.self0 = machineCPU(), redisCPU(m.rdb), cpuTime(os.Getpid())
	return m
}

// end puts what the meter saw since it started in r.
func (m *meter) end(r *phaseResult) {
	r.machine, r.redisCPU, r.self = machineCPU()-m.machine0, redisCPU(m.rdb)-m.redis0, cpuTime(os.Getpid())-m.self0
}

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat: 100
// on every Linux architecture Go runs on.
const clockTicks = 100

// machineCPU is the CPU time every process has used since boot: the
// first line of /proc/stat but idle and iowait.
func machineCPU() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait, steal; guest time is counted in user already
			continue
		}
		v, _ := strconv.ParseInt(f, 10, 64)
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// redisCPU is Redis's user + system CPU time since it started.
func redisCPU(rdb *goredis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// fail records a failed request.
func (p *phaseResult) fail(mu *sync.Mutex, err error) {
	mu.Lock()
	defer mu.Unlock()
	p.errors++
	if p.firstErr == nil {
		p.firstErr = err
	}
}

// drive makes l.n calls of do from l.conns goroutines and times them.
func (l *loader) drive(name string, do func(i int) error) phaseResult {
	r := phaseResult{name: name, n: l.n, lat: make([]time.Duration, l.n)}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	m := l.meter()
	start := time.Now()
	for range l.conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= l.n {
					return
				}
				t := time.Now()
				err := do(i)
				r.lat[i] = time.Since(t)
				if err != nil {
					r.fail(&mu, err)
				}
			}
		})
	}
	wg.Wait()
	r.answered = time.Since(start)
	m.end(&r)
	return r
}

func (l *loader) post(url, body string) error {
	resp, err := l.client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d %s", resp.StatusCode, got)
	}
	return nil
}

func loadEmail(run string, i int) string { return "l" + strconv.Itoa(i) + "-" + run + "@example.com" }

func sendBody(email string) string { return `{"email":"` + email + `","project_id":"shop"}` }

func verifyBody(email, code string) string {
	return `{"email":"` + email + `","project_id":"shop","code":"` + code + `"}`
}

// sink is an SMTP server handing each mail's code to the codeBox, and
// counting the mails.
type sink struct {
	*smtptest.Server
	codes *codeBox
	mu    sync.Mutex
	n     int
	last  time.Time
	all   chan struct{} // closed when want mails have come
	want  int
}

// Its goroutines carry the label sink=name, for -tagfocus in a profile of
// the load tool.
func newSink(b *testing.B, name string, want int, opts ...smtptest.Option) *sink {
	s := &sink{codes: newCodeBox(), all: make(chan struct{}), want: want}
	pprof.Do(context.Background(), pprof.Labels("sink", name), func(context.Context) { s.start(b, opts) })
	return s
}

func (s *sink) start(b *testing.B, opts []smtptest.Option) {
	s.Server = smtptest.Start(b, append(opts, smtptest.WithHandler(func(m smtptest.Message) {
		for _, to := range m.To {
			s.codes.put(to, smtptest.CodeFrom(m))
		}
		s.mu.Lock()
		s.n++
		s.last = time.Now()
		if s.n == s.want {
			close(s.all)
		}
		s.mu.Unlock()
	}))...)
}

// count returns how many mails have come.
func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// wait returns when the last mail came, or an error after timeout.
func (s *sink) wait(timeout time.Duration) (time.Time, error) {
	select {
	case <-s.all:
	case <-time.After(timeout):
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.last, fmt.Errorf("%d of %d mails within %v", s.n, s.want, timeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// authdEnv is authd's production configuration for the load: the
// defaults, but the limits (one load generator is one IP) and a fresh
// database and key prefix.
func (l *loader) authdEnv(smtpSink *sink) map[string]string {
	prefix := "load-" + randHex(4) + ":"
	dropRedisPrefix(l.b, testenv.RedisURL(l.b), prefix)
	env := map[string]string{
		"DATABASE_URL": scratchDatabase(l.b), "REDIS_URL": testenv.RedisURL(l.b), "REDIS_KEY_PREFIX": prefix,
		"SMTP_HOST": smtpSink.Host(), "SMTP_PORT": strconv.Itoa(smtpSink.Port()), "SMTP_TLS": "false",
		"SECRET_KEY": testSecret, "AUTHD_MASTER_KEY": randHex(32), "AUTHD_ISSUER": testIssuer,
		"LIMIT_SEND_CODE_PER_IP": "0", "LIMIT_VERIFY_CODE_PER_IP": "0", "LIMIT_CODES_PER_ADDRESS": "0",
		"LIMIT_FAILURES_PER_ADDRESS": "0", "LIMIT_MAILS_TOTAL": "0", "OTP_RESEND_SECONDS": "0",
	}
	for _, kv := range strings.Fields(os.Getenv("AUTHD_LOAD_ENV")) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			l.b.Fatalf("AUTHD_LOAD_ENV: %q is not NAME=value", kv)
		}
		env[k] = v
	}
	return env
}

// watch samples a process's CPU and RSS over a phase.
type watch struct {
	pid    int
	cpu0   time.Duration
	stop   chan struct{}
	done   chan struct{}
	peakKB atomic.Int64
}

func watchProcess(pid int) *watch {
	w := &watch{pid: pid, cpu0: cpuTime(pid), stop: make(chan struct{}), done: make(chan struct{})}
	if pid == 0 {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if kb := int64(rssKiB(pid)); kb > w.peakKB.Load() {
				w.peakKB.Store(kb)
			}
			select {
			case <-t.C:
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

// end stops the watch and puts what it saw in r.
func (w *watch) end(r *phaseResult) {
	close(w.stop)
	<-w.done
	if w.pid == 0 {
		return
	}
	r.cpu = cpuTime(w.pid) - w.cpu0
	r.rssKiB = int(w.peakKB.Load())
}

// sendAndVerify is the first authd instance's two phases.
type sendAndVerify struct {
	send, verify phaseResult
	rssKiB       int
}

func (l *loader) authdSendAndVerify(bin string) sendAndVerify {
	b := l.b
	mail := newSink(b, "authd", l.n)
	pid, base, stop := l.startAuthd(bin, l.authdEnv(mail))
	defer stop()
	run := randHex(4)
	waits := make([]<-chan string, l.n)
	for i := range l.n {
		waits[i] = mail.codes.expect(loadEmail(run, i))
	}
	w := watchProcess(pid)
	m := l.meter()
	start := time.Now()
	send := l.drive("authd send-code", func(i int) error {
		return l.post(base+"/api/v1/auth/send-code", sendBody(loadEmail(run, i)))
	})
	if err := l.awaitMails(&send, mail, pid, start); err != nil {
		send.fail(&sync.Mutex{}, err)
	}
	w.end(&send)
	m.end(&send)

	codes := make([]string, l.n)
	for i, ch := range waits {
		select {
		case codes[i] = <-ch:
		default: // not delivered: counted above, and its verify fails
		}
	}
	l.checkpoint()
	w = watchProcess(pid)
	verify := l.drive("authd verify-code", func(i int) error {
		if codes[i] == "" {
			return fmt.Errorf("no mail for %s", loadEmail(run, i))
		}
		return l.post(base+"/api/v1/auth/verify-code", verifyBody(loadEmail(run, i), codes[i]))
	})
	w.end(&verify)
	return sendAndVerify{send: send, verify: verify, rssKiB: max(send.rssKiB, verify.rssKiB)}
}

// awaitMails waits for the last of a mail phase's mails, from the phase's
// last answer: r gets the mails come by then (early), the time to the last
// mail from start (delivered), and the drain in between, metered (pid:
// authd's, 0 for none).
func (l *loader) awaitMails(r *phaseResult, mail *sink, pid int, start time.Time) error {
	r.early = mail.count()
	w, m := watchProcess(pid), l.meter()
	last, err := mail.wait(2 * time.Minute)
	r.delivered = last.Sub(start)
	r.drain = &phaseResult{n: l.n - r.early, delivered: r.delivered - r.answered}
	w.end(r.drain)
	m.end(r.drain)
	return err
}

func (l *loader) authdRequestPath(bin string) phaseResult {
	b := l.b
	// The sink holds every mail past the phase: the workers wait on it,
	// and nothing of the mail's work competes with the requests.
	held := newSink(b, "authd-held", 0, smtptest.WithDelay(time.Hour))
	pid, base, stop := l.startAuthd(bin, l.authdEnv(held))
	defer stop()
	run := randHex(4)
	w := watchProcess(pid)
	r := l.drive("authd send-code (request path)", func(i int) error {
		return l.post(base+"/api/v1/auth/send-code", sendBody(loadEmail(run, i)))
	})
	w.end(&r)
	return r
}

// startAuthd starts authd on env: the binary bin, or in this process
// when bin is "" (pid 0: no CPU or RSS of its own). stop ends it, so
// that its idle polling is no noise for the next phase.
func (l *loader) startAuthd(bin string, env map[string]string) (pid int, base string, stop func()) {
	b := l.b
	// Its log to a file, not a pipe into this process (BenchmarkLoad).
	logFile, err := os.Create(filepath.Join(b.TempDir(), "authd.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logFile.Close() })
	if bin != "" {
		cmd, base := startBinaryTo(b, bin, env, logFile, func() string { return fileTail(logFile.Name(), 64<<10) })
		return cmd.Process.Pid, base, func() { cmd.Process.Kill(); cmd.Wait() }
	}
	env["HOST"], env["PORT"], env["AUTHD_DATA_DIR"] = "127.0.0.1", strconv.Itoa(freePort(b)), b.TempDir()
	env["METRICS_ADDR"] = "127.0.0.1:" + strconv.Itoa(freePort(b))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Labelled, with every goroutine it starts: in a -cpuprofile,
	// -tagfocus=process=authd shows authd's share alone.
	go pprof.Do(ctx, pprof.Labels("process", "authd"), func(ctx context.Context) {
		done <- run(ctx, nil, func(k string) string { return env[k] }, nil, logFile, logFile)
	})
	base = "http://127.0.0.1:" + env["PORT"]
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(base + "/api/v1/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			b.Fatal("authd did not become ready")
		}
	}
	return 0, base, func() { cancel(); <-done }
}

func (l *loader) bareRequestPath() phaseResult {
	srv, _ := benchCeiling(l.b)
	run := randHex(4)
	return l.drive("bare send-code (request path)", func(i int) error {
		return l.post(srv.URL+"/send", sendBody(loadEmail(run, i)))
	})
}

func (l *loader) bareVerify() phaseResult {
	b := l.b
	srv, c := benchCeiling(b)
	run := randHex(4)
	c.issueKnown(b, l.n, func(i int) string { return loadEmail(run, i) })
	l.checkpoint()
	return l.drive("bare verify-code", func(i int) error {
		return l.post(srv.URL+"/verify", verifyBody(loadEmail(run, i), "123456"))
	})
}

// bareDelivered is the bare send-code with its mail: the ceiling's
// handler, and bareMailer delivering what it queues.
func (l *loader) bareDelivered() phaseResult {
	b := l.b
	mail := newSink(b, "bare", l.n)
	srv, c := benchCeiling(b)
	stop := bareMailer(b, c.rdb, c.prefix, mail.Addr(), 16)
	defer stop()
	run := randHex(4)
	waits := make([]<-chan string, l.n)
	for i := range l.n {
		waits[i] = mail.codes.expect(loadEmail(run, i))
	}
	m := l.meter()
	start := time.Now()
	r := l.drive("bare send-code", func(i int) error {
		return l.post(srv.URL+"/send", sendBody(loadEmail(run, i)))
	})
	var mu sync.Mutex
	if err := l.awaitMails(&r, mail, 0, start); err != nil {
		r.fail(&mu, err)
	}
	m.end(&r)
	for i, ch := range waits {
		e := loadEmail(run, i)
		select {
		case got := <-ch:
			if want, _ := c.issued.Load(e); got != want {
				r.fail(&mu, fmt.Errorf("%s: the mail carried %q, not the code issued", e, got))
			}
		default:
		}
	}
	return r
}

// bareMailer starts workers that deliver the ceiling's mail jobs (the
// code is the first bytes of each job's payload): each reads its share
// of the 64 streams through a consumer group, up to 8 entries a stream
// (32 a batch), sends each over its kept-open SMTP connection, then acks
// and deletes the batch in one pipeline. stop ends them.
func bareMailer(b *testing.B, rdb *goredis.Client, prefix, smtpAddr string, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	streams := make([]string, authd.Partitions)
	for p := range streams {
		streams[p] = prefix + "{a:" + strconv.Itoa(p) + "}:mail"
		if err := rdb.XGroupCreateMkStream(ctx, streams[p], "bare", "0").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			b.Fatal(err)
		}
	}
	tmpl := bareMessage(b)
	var wg sync.WaitGroup
	for wk := range workers {
		var mine []string
		for p := wk; p < len(streams); p += workers {
			mine = append(mine, streams[p])
		}
		args := &goredis.XReadGroupArgs{Group: "bare", Consumer: "w" + strconv.Itoa(wk), Count: int64(32 / len(mine)), Block: 20 * time.Millisecond,
			Streams: append(slices.Clone(mine), slices.Repeat([]string{">"}, len(mine))...)}
		wg.Go(func() {
			pprof.Do(ctx, pprof.Labels("process", "bare-mailer"), func(ctx context.Context) { // -tagfocus, as authd's
				c, err := smtp.Dial(smtpAddr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				if err := c.Hello("localhost"); err != nil {
					b.Error(err)
					return
				}
				for ctx.Err() == nil {
					res, err := rdb.XReadGroup(ctx, args).Result()
					if err != nil {
						continue // redis.Nil: nothing within Block; or stopping
					}
					pipe := rdb.Pipeline()
					for _, st := range res {
						ids := make([]string, 0, len(st.Messages))
						for _, m := range st.Messages {
							to, _ := m.Values["a"].(string)
							s, _ := m.Values["s"].(string)
							if err := bareSend(c, to, bytes.ReplaceAll(tmpl, []byte("000000"), []byte(s[:6]))); err != nil {
								b.Error(err)
								return
							}
							ids = append(ids, m.ID)
						}
						pipe.XAck(ctx, st.Stream, "bare", ids...)
						pipe.XDel(ctx, st.Stream, ids...)
					}
					if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
						b.Error(err)
					}
				}
			})
		})
	}
	return func() { cancel(); wg.Wait() }
}

func bareSend(c *smtp.Client, to string, msg []byte) error {
	if err := c.Mail("info@example.com"); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(bytes.Replace(msg, []byte("{{to}}"), []byte(to), 1)); err != nil {
		return err
	}
	return w.Close()
}

// bareMessage is the bare mailer's fixed message: authd's own templates
// rendered once, code 000000, as multipart/alternative text and HTML.
func bareMessage(b *testing.B) []byte {
	r, err := mailer.DefaultTemplates().Render(authd.Message{ProjectName: "Authentication Microservice", Code: "000000", TTL: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	var m bytes.Buffer
	m.WriteString("From: \"Auth Service\" <info@example.com>\r\nTo: <{{to}}>\r\nSubject: " + r.Subject + "\r\n")
	m.WriteString("Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMessage-ID: <" + randHex(16) + "@example.com>\r\n")
	m.WriteString("MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n")
	m.WriteString("Content-Type: multipart/alternative; boundary=\"b0\"\r\n\r\n")
	m.WriteString("--b0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + crlf(r.Text) + "\r\n")
	m.WriteString("--b0\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + crlf(r.HTML) + "\r\n--b0--\r\n")
	return m.Bytes()
}

// cpuTime is a process's user + system CPU time from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses: state is
	// the 3rd field of the line, utime the 14th, stime the 15th.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	return strings.Join(f[:3], " ")
}

// fileTail is the last n bytes of the file at path, for a failure's message.
func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	tail, _ := io.ReadAll(f)
	return string(tail)
}
