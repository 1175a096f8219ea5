package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
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

// answer is one request of a burst.
type answer struct {
	status     int
	retryAfter string
	detail     string
	took       time.Duration
}

// checkUnavailable fails t unless a is the 503 clients know, with a
// Retry-After.
func checkUnavailable(t *testing.T, a answer) {
	t.Helper()
	if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 || a.detail != "Service temporarily unavailable" {
		t.Errorf("503 with Retry-After %q, detail %q; want a Retry-After in seconds and the usual detail", a.retryAfter, a.detail)
	}
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
// answer comes after the Redis client's own timeout (2 s, retried once).
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
		t.Errorf("answered after %v; want the Redis client's 2 s timeout, retried once: about 4 s", took)
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
