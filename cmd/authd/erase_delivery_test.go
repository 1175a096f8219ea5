package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/smtptest"
)

// TestUsersDeleteStopsQueuedMail: `authd users delete` of an address whose
// mail is still queued (within its resend cooldown, when the worker skips
// the code check) means that mail is never sent, and its delivery status
// is gone.
func TestUsersDeleteStopsQueuedMail(t *testing.T) {
	t.Parallel()
	p := newProduction(t, smtptest.WithDelay(time.Second))
	p.Env["MAIL_WORKERS"] = "1"
	inst := start(t, p.Env)
	// The only worker is busy with a slow send: the next mail waits in the
	// queue, unclaimed.
	inst.sendV2(t, uniqueEmail("busy"), "shop")
	for deadline := time.Now().Add(5 * time.Second); p.SMTP.Attempts() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first send never started")
		}
	}
	erased := uniqueEmail("erased")
	id := inst.sendV2(t, erased, "shop")
	if out, errs, ec := runCmd(t, p.Env, "users", "delete", erased); ec != 0 {
		t.Fatalf("users delete: exit %d %s %s", ec, out, errs)
	}
	later := uniqueEmail("later")
	inst.sendV2(t, later, "shop")
	mailCode(t, p.SMTP, later, 0)
	// A job leaves its stream once finished: when they are all empty, the
	// erased mail would have been sent too (the streams are not read in
	// queue order: the later one may come first).
	ctx := context.Background()
	rdb := goredisClient(t)
	streams, err := rdb.Keys(ctx, p.Env["REDIS_KEY_PREFIX"]+"{a:*}:mail").Result()
	if err != nil || len(streams) == 0 {
		t.Fatalf("mail streams: %v %v", streams, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int64
		for _, st := range streams {
			l, err := rdb.XLen(ctx, st).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += l
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still queued", n)
		}
	}
	for _, m := range p.SMTP.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, erased) {
				t.Fatalf("a mail reached %s after its erasure", erased)
			}
		}
	}
	if code, m := inst.delivery(t, id); code != 404 {
		t.Errorf("the erased mail's delivery: %d %v, want 404", code, m)
	}
}
