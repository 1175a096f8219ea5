package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// Faults injected by toxiproxy, in this process, between authd and the
// real PostgreSQL, Redis and SMTP server: what a user sees of each is in
// the README's "Faults and what users see", and each claim there is one
// of these tests. Every answer goes through the OpenAPI validator like
// any other.

// faulty is a production environment whose PostgreSQL, Redis and SMTP
// server are reached through a proxy each.
type faulty struct {
	production
	DBProxy, RedisProxy, SMTPProxy *testenv.Proxy
	rdb                            *goredis.Client // the real Redis, to see what authd stored
}

func newFaulty(t *testing.T, opts ...smtptest.Option) faulty {
	t.Helper()
	f := faulty{production: newProduction(t, opts...)}
	dbURL, err := url.Parse(f.Env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	redisURL, err := url.Parse(f.Env["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	f.DBProxy = testenv.StartProxy(t, dbURL.Host)
	f.RedisProxy = testenv.StartProxy(t, redisURL.Host)
	f.SMTPProxy = testenv.StartProxy(t, f.SMTP.Addr())
	f.Env["DATABASE_URL"] = f.DBProxy.URL(f.Env["DATABASE_URL"])
	f.Env["REDIS_URL"] = f.RedisProxy.URL(f.Env["REDIS_URL"])
	f.Env["SMTP_HOST"], f.Env["SMTP_PORT"] = "127.0.0.1", strconv.Itoa(f.SMTPProxy.Port())
	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	f.rdb = goredis.NewClient(opt)
	t.Cleanup(func() { f.rdb.Close() })
	return f
}

// manyAddresses turns off the limits that one client IP asking for many
// addresses would meet; the cooldown and the per-code limits stay.
func manyAddresses(env map[string]string) {
	for _, k := range []string{"LIMIT_SEND_CODE_PER_IP", "LIMIT_VERIFY_CODE_PER_IP", "LIMIT_CODES_PER_ADDRESS", "LIMIT_MAILS_TOTAL"} {
		env[k] = "0"
	}
}

// redisState is what authd keeps under its prefix: each key with its type
// and, for the mail streams, how many jobs they hold.
func (f faulty) redisState(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := f.rdb.Scan(ctx, 0, f.Env["REDIS_KEY_PREFIX"]+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ := f.rdb.Type(ctx, k).Val()
		if typ == "stream" {
			typ += fmt.Sprintf(" of %d", f.rdb.XLen(ctx, k).Val())
		}
		out[k] = typ
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// goroutines counts this process's goroutines but the test's own
// servers': toxiproxy holds a few for each connection through it, the SMTP
// server one, for as long as authd's pools keep them open.
func goroutines() (int, string) {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var mine []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "toxiproxy") && !strings.Contains(g, "emersion/go-smtp.(*Server)") {
			mine = append(mine, g)
		}
	}
	return len(mine), strings.Join(mine, "\n\n")
}

// settle waits until the goroutines are back to at most base+margin, or
// fails t with their stacks.
func settle(t *testing.T, base, margin int) {
	t.Helper()
	client.CloseIdleConnections() // their server halves end with them
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, stacks := goroutines()
		if n <= base+margin {
			t.Logf("goroutines: %d before, %d after", base, n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before the fault, still %d 10 s after it:\n%s", base, n, stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answer is one request of a burst.
type answer struct {
	status     int
	retryAfter string
	detail     string
	took       time.Duration
}

// burst sends n v1 send-codes at once, each for an address of its own.
// shed, if not nil, is closed at the first 503.
func burst(t *testing.T, inst *instance, n int, shed chan struct{}) []answer {
	t.Helper()
	out := make([]answer, n)
	var once sync.Once
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			r := inst.send(t, "v1", uniqueEmail("burst"), "shop")
			out[i] = answer{r.Status, r.Header.Get("Retry-After"), r.detail(), time.Since(start)}
			if r.Status == 503 && shed != nil {
				once.Do(func() { close(shed) })
			}
		})
	}
	wg.Wait()
	return out
}

// summary is the figures of a burst's answers of one status, for the log
// (the README's table).
func summary(as []answer, status int) string {
	var d []time.Duration
	for _, a := range as {
		if a.status == status {
			d = append(d, a.took)
		}
	}
	if len(d) == 0 {
		return fmt.Sprintf("%d: none", status)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return fmt.Sprintf("%d: %d, p50 %v, p90 %v, max %v", status, len(d), d[len(d)/2].Round(time.Millisecond),
		d[len(d)*9/10].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// checkUnavailable fails t unless a is the 503 clients know, with a
// Retry-After.
func checkUnavailable(t *testing.T, a answer) {
	t.Helper()
	if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 || a.detail != "Service temporarily unavailable" {
		t.Errorf("503 with Retry-After %q, detail %q; want a Retry-After in seconds and the usual detail", a.retryAfter, a.detail)
	}
}

// Redis answering 200 ms late, with eight connections for twenty times as
// many requests: each request waits for a connection no longer than
// REQUEST_TIMEOUT, then is answered 503 — no pile-up behind the pool —
// and once the latency is gone nothing is left running. The bound is read
// from authd's own access lines (duration_ms): the test client's time
// includes the validator's work, which a loaded machine stretches.
func TestFaultRedisLatency(t *testing.T) {
	f := newFaulty(t)
	manyAddresses(f.Env)
	// A pool of its own size, so that the requests queue for it whatever
	// the machine's CPU count (go-redis sizes it 10 per CPU).
	f.Env["REDIS_URL"] += "?pool_size=8"
	f.Env["REQUEST_TIMEOUT"] = "500ms"
	inst := start(t, f.Env)
	// Every pooled connection open before the fault: a connection opened
	// during it would cost its handshake's round trips too.
	for _, a := range burst(t, inst, 16, nil) {
		if a.status != 200 {
			t.Fatalf("send-code before the fault: %d %s", a.status, a.detail)
		}
	}
	client.CloseIdleConnections()
	base, _ := goroutines()

	from := len(inst.Logs.String())
	remove := f.RedisProxy.Toxic("latency", "downstream", map[string]any{"latency": 200})
	answers := burst(t, inst, 160, nil)
	remove()
	served := accessLines(t, inst.Logs.String()[from:], "POST /api/v1/auth/send-code")
	t.Logf("Redis +200 ms, 160 send-codes at once, pool of 8, REQUEST_TIMEOUT=500ms, as authd served them: %s; %s",
		summary(served, 200), summary(served, 503))
	ok, unavailable := 0, 0
	for _, a := range answers {
		switch a.status {
		case 200:
			ok++
		case 503:
			unavailable++
			checkUnavailable(t, a)
		default:
			t.Errorf("status %d (%s), want 200 or 503", a.status, a.detail)
		}
	}
	if len(served) != len(answers) {
		t.Fatalf("%d access lines for %d requests", len(served), len(answers))
	}
	// Without the deadline the requests wait for a connection up to the
	// pool's timeout (3 s), then again (go-redis retries a pool timeout):
	// most of them answered after 3 to 6 s. With it, a request waits no
	// longer than 500 ms, plus the round trip it may have on the wire (a
	// read the deadline does not cut: the Redis client's own 2 s bounds
	// it); a loaded machine (-race, other tests) stretches a few.
	late := 0
	for _, a := range served {
		if a.took > time.Second {
			late++
		}
		if a.took > 3*time.Second {
			t.Errorf("authd took %v to answer %d: the 500 ms deadline does not bound it", a.took, a.status)
		}
	}
	if late > len(served)/10 {
		t.Errorf("%d of %d answers took over 1 s: the 500 ms deadline does not bound them", late, len(served))
	}
	if ok < 8 || unavailable < len(answers)/2 {
		t.Errorf("%d answered 200 and %d 503; want the first rounds served (at least 8) and most cut at the deadline", ok, unavailable)
	}
	settle(t, base, 10)
	if r := inst.send(t, "v1", uniqueEmail("after"), "shop"); r.Status != 200 {
		t.Fatalf("send-code after the fault: %d %s", r.Status, r.Body)
	}
}

// accessLines are the answers of route in an instance's JSON log, with
// the time authd took to give each.
func accessLines(t *testing.T, logs, route string) []answer {
	t.Helper()
	var out []answer
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Msg, Route string
			Status     int
			DurationMS float64 `json:"duration_ms"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "request" || l.Route != route {
			continue
		}
		out = append(out, answer{status: l.Status, took: time.Duration(l.DurationMS * float64(time.Millisecond))})
	}
	return out
}

// Redis's connection cut in the middle of a request: 503 at once, and
// what Redis had done of it stands whole — a script writes all or
// nothing. Cut before the send-code's script reached Redis: nothing was
// written, and the same address gets its code at once. Cut as the reply
// comes back (or Redis gone silent), Redis may have run the script: then
// the code and its mail job were both written — the mail arrives, its
// code verifies, and asking again within the cooldown is 429 (authd
// cannot tell a lost reply from a script never run); the mail worker's
// claim that took the new job may have lost its reply too, and the mail
// then waits for that claim to lapse (MAIL_CLAIM_TIMEOUT, 2 s here). A
// verify-code whose script Redis ran has spent the code. Gone silent, the
// answer comes after the Redis client's own timeout, within
// REQUEST_TIMEOUT.
func TestFaultRedisCut(t *testing.T) {
	f := newFaulty(t)
	manyAddresses(f.Env)
	f.Env["MAIL_CLAIM_TIMEOUT"] = "2s"
	inst := start(t, f.Env)
	quiet := func() (map[string]string, int) {
		t.Helper()
		id := inst.sendV2(t, uniqueEmail("warm"), "shop")
		inst.waitStatus(t, id, "sent", 10*time.Second) // its job finished: nothing moves
		return f.redisState(t), len(f.SMTP.Messages())
	}
	cut := func(name, typ, stream string, request func() response) (r response, took time.Duration) {
		t.Helper()
		remove := f.RedisProxy.Toxic(typ, stream, map[string]any{"timeout": 0})
		start := time.Now()
		r = request()
		took = time.Since(start)
		remove()
		t.Logf("Redis %s: %d in %v", name, r.Status, took.Round(time.Millisecond))
		if r.Status != 503 {
			t.Fatalf("Redis %s: %d %s, want 503", name, r.Status, r.Body)
		}
		if typ == "reset_peer" && took > time.Second {
			t.Errorf("Redis %s: answered after %v, want at once", name, took)
		}
		checkUnavailable(t, answer{r.Status, r.Header.Get("Retry-After"), r.detail(), took})
		return r, took
	}
	send := func(email string) func() response {
		return func() response { return inst.send(t, "v1", email, "shop") }
	}

	before, mails := quiet()
	email := uniqueEmail("cut")
	cut("reset before the script", "reset_peer", "upstream", send(email))
	if after := f.redisState(t); !maps.Equal(before, after) {
		t.Errorf("a send-code cut before Redis changed Redis:\nbefore %v\nafter  %v", before, after)
	}
	code := inst.sendAndRead(t, f.SMTP, email, "shop") // no cooldown: nothing was stored
	if got := len(f.SMTP.Messages()); got != mails+1 {
		t.Errorf("%d mails, want only the one asked for after the fault", got-mails)
	}
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("verify after the fault: %d %s", r.Status, r.Body)
	}

	// allOrNothing: after a 503 whose script Redis may have run, Redis
	// holds what it held before, or the whole code with its mail job.
	allOrNothing := func(name string, before map[string]string, mails int, email string) {
		t.Helper()
		if after := f.redisState(t); maps.Equal(before, after) {
			time.Sleep(500 * time.Millisecond) // a mail would have come by now
			if got := len(f.SMTP.Messages()); got != mails {
				t.Errorf("%s: Redis unchanged, yet %d mails", name, got-mails)
			}
			t.Logf("%s: Redis never ran the script; nothing stored", name)
			return
		}
		code := mailCode(t, f.SMTP, email, mails)
		if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
			t.Fatalf("%s: the code of the send-code answered 503 does not verify: %d %s", name, r.Status, r.Body)
		}
		if r := inst.send(t, "v1", email, "shop"); r.Status != 429 {
			t.Errorf("%s: send-code again within the cooldown: %d %s, want 429", name, r.Status, r.Body)
		}
		time.Sleep(300 * time.Millisecond) // a second mail would have come by now
		if got := len(f.SMTP.Messages()); got != mails+1 {
			t.Errorf("%s: %d mails, want exactly one", name, got-mails)
		}
		t.Logf("%s: Redis ran the script; code and mail job both stored, the mail sent", name)
	}
	before, mails = quiet()
	email = uniqueEmail("cut")
	cut("reset as the reply comes back", "reset_peer", "downstream", send(email))
	allOrNothing("reset as the reply comes back", before, mails, email)

	before, mails = quiet()
	email = uniqueEmail("cut")
	_, took := cut("silent", "timeout", "downstream", send(email))
	if took < 3*time.Second || took > 6*time.Second {
		t.Errorf("answered after %v; want the Redis client's 2 s timeout, retried once (about 4 s), within REQUEST_TIMEOUT (5 s)", took)
	}
	allOrNothing("silent", before, mails, email)

	email = uniqueEmail("cut-verify")
	code = inst.sendAndRead(t, f.SMTP, email, "shop")
	before, _ = quiet()
	cut("reset as verify-code's reply comes back", "reset_peer", "downstream", func() response {
		return inst.verify(t, "v1", email, "shop", code)
	})
	ran := false // the consume deleted the code's key
	after := f.redisState(t)
	for k := range before {
		if _, ok := after[k]; !ok && strings.Contains(k, ":code:") {
			ran = true
		}
	}
	switch r := inst.verify(t, "v1", email, "shop", code); {
	case ran && r.Status != 401:
		t.Errorf("Redis ran the verify-code answered 503: the same code then %d, want 401 (spent)", r.Status)
	case !ran && r.Status != 200:
		t.Errorf("Redis never ran the verify-code answered 503: the same code then %d %s, want 200", r.Status, r.Body)
	default:
		t.Logf("verify-code cut: Redis ran it: %v; the same code then %d", ran, r.Status)
	}
}

// PostgreSQL cut between the code's consumption (Redis) and the user's
// upsert: 503, and the code is given back, so the same code verifies once
// PostgreSQL is back; send-code is served meanwhile. Cut outright, the answer is at once; gone silent, at
// REQUEST_TIMEOUT (without a deadline the upsert waited for as long as the
// connection stayed silent: minutes).
func TestFaultPostgresCutAtUpsert(t *testing.T) {
	f := newFaulty(t)
	f.Env["REQUEST_TIMEOUT"] = "1s"
	inst := start(t, f.Env)
	for _, fault := range []struct {
		name   string
		inject func() (remove func())
		within time.Duration
	}{
		{"reset", func() func() { f.DBProxy.Cut(); return f.DBProxy.Restore }, 500 * time.Millisecond},
		{"silent", func() func() {
			return f.DBProxy.Toxic("timeout", "downstream", map[string]any{"timeout": 0})
		}, 3 * time.Second},
	} {
		email := uniqueEmail("pg-" + fault.name)
		code := inst.sendAndRead(t, f.SMTP, email, "shop")
		remove := fault.inject()
		start := time.Now()
		r := inst.verify(t, "v1", email, "shop", code)
		took := time.Since(start)
		// send-code does not touch PostgreSQL: served, and mailed, meanwhile.
		other := uniqueEmail("pg-send-" + fault.name)
		if c := inst.sendAndRead(t, f.SMTP, other, "shop"); c == "" {
			t.Fatalf("%s: no code mailed for a send-code while PostgreSQL was down", fault.name)
		}
		remove()
		t.Logf("PostgreSQL %s at the upsert: %d in %v", fault.name, r.Status, took.Round(time.Millisecond))
		if r.Status != 503 {
			t.Fatalf("%s: verify with PostgreSQL down: %d %s, want 503", fault.name, r.Status, r.Body)
		}
		checkUnavailable(t, answer{r.Status, r.Header.Get("Retry-After"), r.detail(), took})
		if took > fault.within {
			t.Errorf("%s: answered in %v, want within %v", fault.name, took, fault.within)
		}
		if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
			t.Fatalf("%s: the same code once PostgreSQL is back: %d %s, want 200", fault.name, r.Status, r.Body)
		}
		if r := inst.verify(t, "v1", email, "shop", code); r.Status != 401 {
			t.Fatalf("%s: the code verified twice: %d", fault.name, r.Status)
		}
	}
}

// The SMTP server takes a message, and the connection resets as its 250
// comes back: authd cannot know the server has it, retries, and the mail
// arrives twice, with the same code (at least once, as the README says;
// here exactly twice: one reply lost, one retry).
func TestFaultSMTPResetAfterData(t *testing.T) {
	var proxy atomic.Pointer[testenv.Proxy] // the SMTP server's goroutines read it
	toxic := make(chan func(), 1)           // the reset's remover, once set
	var once sync.Once
	f := newFaulty(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		// The message is read and will be kept; its reply is next.
		once.Do(func() { toxic <- proxy.Load().Toxic("reset_peer", "downstream", map[string]any{"timeout": 0}) })
		return nil
	}))
	proxy.Store(f.SMTPProxy)
	fastRetries(f.Env)
	inst := start(t, f.Env)
	email := uniqueEmail("smtp-reset")
	id := inst.sendV2(t, email, "shop")
	inst.waitStatus(t, id, "retrying", 10*time.Second)
	(<-toxic)()
	m := inst.waitStatus(t, id, "sent", 10*time.Second)
	f.SMTP.Wait(t, 2, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a third would have come by now
	msgs := f.SMTP.Messages()
	t.Logf("SMTP reset after DATA: %d copies, delivery %v", len(msgs), m)
	if len(msgs) != 2 || smtptest.CodeFrom(msgs[0]) != smtptest.CodeFrom(msgs[1]) || smtptest.CodeFrom(msgs[0]) == "" {
		t.Fatalf("%d messages; want the same code twice", len(msgs))
	}
	if n, _ := m["attempts"].(float64); n < 2 {
		t.Errorf("attempts %v, want 2 or more", m["attempts"])
	}
	if r := inst.verify(t, "v1", email, "shop", smtptest.CodeFrom(msgs[1])); r.Status != 200 {
		t.Fatalf("the code mailed twice does not verify: %d %s", r.Status, r.Body)
	}
}

// MAX_INFLIGHT=4 with Redis answering 250 ms late: of 24 send-codes at
// once four are served, the others answered 503 at once (sooner than Redis
// answers anything) with Retry-After: 1, and counted; liveness, readiness
// and the metrics are never refused; nothing is left running after.
func TestFaultShedAtMaxInflight(t *testing.T) {
	f := newFaulty(t)
	manyAddresses(f.Env)
	f.Env["MAX_INFLIGHT"] = "4"
	metrics := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/metrics"
	f.Env["METRICS_ADDR"] = strings.TrimSuffix(strings.TrimPrefix(metrics, "http://"), "/metrics")
	inst := start(t, f.Env)
	if r := inst.send(t, "v1", uniqueEmail("warm"), "shop"); r.Status != 200 {
		t.Fatalf("send-code before the fault: %d %s", r.Status, r.Body)
	}
	client.CloseIdleConnections()
	base, _ := goroutines()

	const latency, n = 250 * time.Millisecond, 24
	remove := f.RedisProxy.Toxic("latency", "downstream", map[string]any{"latency": latency.Milliseconds()})
	done, shedding := make(chan []answer), make(chan struct{})
	go func() { done <- burst(t, inst, n, shedding) }()
	// At the first 503 four requests are held in Redis (three round trips
	// of 250 ms: their connections are new), and the probes answer
	// meanwhile (readiness within its 1 s per check).
	select {
	case <-shedding:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing shed")
	}
	for _, u := range []string{inst.URL + "/api/v1/health", inst.URL + "/api/v1/health/ready", inst.URL + "/.well-known/jwks.json",
		inst.URL + "/api/v1/openapi.json", inst.URL + "/docs", metrics} {
		if r := get(t, u); r.Status != 200 {
			t.Errorf("GET %s while shedding: %d %s, want 200", u, r.Status, r.Body)
		}
	}
	if r := postJSON(t, inst.URL+"/api/v2/auth/verify-proof", map[string]string{"token": "x", "audience": "*"}); r.Status != 200 {
		t.Errorf("verify-proof while shedding: %d %s, want 200", r.Status, r.Body)
	}
	answers := <-done
	remove()
	t.Logf("MAX_INFLIGHT=4, Redis +250 ms, %d send-codes at once: %s; %s", n, summary(answers, 200), summary(answers, 503))
	ok, shed := 0, 0
	for _, a := range answers {
		switch a.status {
		case 200:
			ok++
		case 503:
			shed++
			checkUnavailable(t, a)
			if a.retryAfter != "1" || a.took >= latency {
				t.Errorf("shed after %v with Retry-After %q; want at once (before Redis could answer) and 1", a.took, a.retryAfter)
			}
		default:
			t.Errorf("status %d (%s), want 200 or 503", a.status, a.detail)
		}
	}
	if ok < 1 || ok > 4 || shed != n-ok {
		t.Errorf("%d served, %d shed of %d; want at most 4 served, the rest shed", ok, shed, n)
	}
	body := getText(t, metrics, 200)
	if want := fmt.Sprintf("authd_requests_shed_total{reason=\"max_inflight\"} %d\n", shed); !strings.Contains(body, want) {
		t.Errorf("metrics lack %q", want)
	}
	if !strings.Contains(body, "\nauthd_http_requests_in_flight 0\n") {
		t.Error("requests still counted in flight")
	}
	if got := strings.Count(inst.Logs.String(), `"outcome":"shed","limit":"max_inflight"`); got != shed {
		t.Errorf("%d access lines say shed, want %d", got, shed)
	}
	settle(t, base, 10)
}

// Clients that send their headers and then stall their body hold no place
// among MAX_INFLIGHT: with the bound at 2 and eight such sockets open on
// every auth route, send-code and verify-code are served as ever.
func TestShedIgnoresStalledBodies(t *testing.T) {
	env := newProduction(t)
	env.Env["MAX_INFLIGHT"] = "2"
	inst := start(t, env.Env)
	addr := strings.TrimPrefix(inst.URL, "http://")
	for i := range 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		path := []string{"/api/v1/auth/send-code", "/api/v1/auth/verify-code", "/api/v2/auth/send-code", "/api/v2/auth/verify-code"}[i%4]
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"email\":", path, addr)
	}
	time.Sleep(200 * time.Millisecond) // the server has read every header
	email := uniqueEmail("stalled")
	code := inst.sendAndRead(t, env.SMTP, email, "shop")
	if r := inst.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("verify-code beside 8 stalled bodies, MAX_INFLIGHT=2: %d %s", r.Status, r.Body)
	}
}

// Mail backpressure: one worker and an SMTP server taking half a second a
// mail fall behind six codes; once the oldest mail held up has waited
// over MAIL_MAX_LAG, send-code answers 503 with Retry-After (and stores
// nothing), verify-code goes on, readiness shows the lag, one WARN line
// names it; once the backlog is sent, one INFO line, and send-code
// answers 200 again.
func TestMailBackpressure(t *testing.T) {
	env := newProduction(t, smtptest.WithDelay(500*time.Millisecond))
	manyAddresses(env.Env)
	env.Env["MAIL_WORKERS"], env.Env["MAIL_MAX_LAG"] = "1", "1s"
	inst := start(t, env.Env)
	first := uniqueEmail("lag-first")
	for i := range 6 {
		email := first
		if i > 0 {
			email = uniqueEmail("lag")
		}
		if r := inst.send(t, "v1", email, "shop"); r.Status != 200 {
			t.Fatalf("send-code %d before any lag: %d %s", i, r.Status, r.Body)
		}
	}
	ready := func() (map[string]any, float64) {
		t.Helper()
		r := get(t, inst.URL+"/api/v1/health/ready")
		if r.Status != 200 {
			t.Fatalf("readiness while mail lags: %d %s, want 200 (lagging is not down)", r.Status, r.Body)
		}
		m := r.json(t)
		checks, _ := m["checks"].(map[string]any)
		lag, _ := m["mail_lag_seconds"].(float64)
		return checks, lag
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		checks, lag := ready()
		if checks["mail_lag"] == "degraded" {
			if lag <= 1 {
				t.Errorf("mail_lag degraded at mail_lag_seconds %v, want over MAIL_MAX_LAG=1s", lag)
			}
			t.Logf("readiness: mail_lag %v, mail_lag_seconds %v", checks["mail_lag"], lag)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail_lag never degraded: %v, lag %v", checks, lag)
		}
		time.Sleep(50 * time.Millisecond)
	}
	late := uniqueEmail("lag-refused")
	r := inst.send(t, "v1", late, "shop")
	if r.Status != 503 {
		t.Fatalf("send-code while mail lags: %d %s, want 503", r.Status, r.Body)
	}
	checkUnavailable(t, answer{r.Status, r.Header.Get("Retry-After"), r.detail(), 0})
	code := mailCode(t, env.SMTP, first, 0)
	if r := inst.verify(t, "v1", first, "shop", code); r.Status != 200 {
		t.Fatalf("verify-code while mail lags: %d %s, want 200", r.Status, r.Body)
	}
	waitLog(t, inst, "mail delivery caught up", 30*time.Second)
	logs := inst.Logs.String()
	if n := strings.Count(logs, "mail delivery is behind"); n != 1 {
		t.Errorf("%d WARN lines for the lag within a minute, want 1", n)
	}
	if !regexp.MustCompile(`"level":"WARN","msg":"mail delivery is behind[^\n]*"lag":"[0-9.]+s","max_lag":"1s","setting":"MAIL_MAX_LAG"`).MatchString(logs) {
		t.Errorf("the WARN line does not name the lag and MAIL_MAX_LAG:\n%s", logs)
	}
	if checks, _ := ready(); checks["mail_lag"] != "ok" {
		t.Errorf("readiness after catching up: mail_lag %v, want ok", checks["mail_lag"])
	}
	// Nothing was stored for the refused one: no cooldown to wait out.
	if got := inst.sendAndRead(t, env.SMTP, late, "shop"); got == "" {
		t.Fatal("no code")
	}
}

// waitLog waits until the instance's log holds s.
func waitLog(t *testing.T, inst *instance, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(inst.Logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v", s, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
