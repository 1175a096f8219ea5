package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// splitFixture is a split-mode store on a client whose round trips are
// counted, and that can run a function between a call's first pipeline and
// whatever follows it.
type splitFixture struct {
	c      *goredis.Client // plain, for looking
	prefix string
	hook   *countingHook
	after  *afterPipeline
	s      *redis.Store
}

func newSplitFixture(t *testing.T) *splitFixture {
	t.Helper()
	c := newClient(t)
	f := &splitFixture{c: c, prefix: newPrefix(t, c), hook: &countingHook{}, after: &afterPipeline{}}
	hooked := goredis.NewClient(c.Options())
	t.Cleanup(func() { hooked.Close() })
	hooked.AddHook(f.hook)
	hooked.AddHook(f.after)
	f.s = redis.New(hooked, redis.Options{Prefix: f.prefix, Split: true})
	return f
}

// afterPipeline runs fn once, right after the next pipeline reached the
// server: a concurrent request landing between a split-mode call's round
// trips.
type afterPipeline struct{ fn atomic.Pointer[func()] }

func (h *afterPipeline) DialHook(next goredis.DialHook) goredis.DialHook          { return next }
func (h *afterPipeline) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }
func (h *afterPipeline) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		if fn := h.fn.Swap(nil); fn != nil {
			(*fn)()
		}
		return err
	}
}

// trips returns how many round trips f took.
func (f *splitFixture) trips(fn func()) int64 {
	before := f.hook.trips.Load()
	fn()
	return f.hook.trips.Load() - before
}

// keyState is a key's value and TTL.
type keyState struct {
	value string
	ttl   time.Duration
}

// snapshot is every key under the fixture's prefix. Empty streams are left
// out: the queue keeps its 64 streams (ensureGroups creates them), and an
// XADD taken back by XDEL leaves one.
func (f *splitFixture) snapshot(t *testing.T) map[string]keyState {
	t.Helper()
	ctx := context.Background()
	keys, err := f.c.Keys(ctx, f.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]keyState{}
	for _, k := range keys {
		var v string
		switch typ := f.c.Type(ctx, k).Val(); typ {
		case "string":
			v = f.c.Get(ctx, k).Val()
		case "hash":
			h := f.c.HGetAll(ctx, k).Val()
			fields := make([]string, 0, len(h))
			for name, val := range h {
				fields = append(fields, name+"="+val)
			}
			sort.Strings(fields)
			v = strings.Join(fields, ",")
		case "stream":
			entries := f.c.XRange(ctx, k, "-", "+").Val()
			if len(entries) == 0 {
				continue
			}
			v = fmt.Sprint(entries)
		default:
			v = typ
		}
		out[k] = keyState{v, f.c.PTTL(ctx, k).Val()}
	}
	return out
}

// wantSameState checks that the keys hold what they held, with the TTLs
// they had (give or take the time the test took).
func wantSameState(t *testing.T, what string, before, after map[string]keyState) {
	t.Helper()
	for k, b := range before {
		a, ok := after[k]
		switch {
		case !ok:
			t.Errorf("%s: %s = %q is gone", what, k, b.value)
		case a.value != b.value:
			t.Errorf("%s: %s = %q, was %q", what, k, a.value, b.value)
		case (a.ttl > 0) != (b.ttl > 0) || (a.ttl-b.ttl).Abs() > time.Second:
			t.Errorf("%s: %s TTL %v, was %v", what, k, a.ttl, b.ttl)
		}
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: new key %s = %q", what, k, a.value)
		}
	}
}

func newAddress() string { return strings.ToLower(rand.Text()) }

// splitIssue is a request with every limit on and a mail job.
func splitIssue(address, ip, id string, now time.Time) authd.IssueRequest {
	exp := now.Add(5 * time.Minute)
	return authd.IssueRequest{
		Address: address, Project: "shop", ClientIP: ip, Now: now,
		Record:          authd.CodeRecord{ID: id, Hash: []byte("hash of " + id), ExpiresAt: exp},
		ResendCooldown:  time.Minute,
		CodesPerAddress: authd.Rate{N: 5, Period: time.Hour},
		SendPerIP:       authd.Rate{N: 10, Period: time.Minute},
		MailsPerProject: authd.Rate{N: 100, Period: time.Hour},
		Job: &authd.MailJob{
			DeliveryID: newAddress(), Address: address, Project: "shop", CodeID: id,
			ExpiresAt: exp, ReplaceableAt: now.Add(time.Minute), Sealed: []byte("sealed " + id),
		},
	}
}

func splitConsume(address, ip, id string, now time.Time) authd.ConsumeRequest {
	return authd.ConsumeRequest{
		Address: address, Project: "shop", ClientIP: ip, Now: now, Hash: []byte("hash of " + id),
		AttemptsPerCode: 5, FailuresPerAddress: authd.Rate{N: 10, Period: time.Hour},
		VerifyPerIP: authd.Rate{N: 3, Period: time.Minute},
	}
}

// TestSplitOneRoundTrip: in split mode (Redis Cluster), send-code and
// verify-code still take one round trip when nothing refuses (DESIGN.md
// §3: a pipeline of scripts, one per hash slot, counts as one); a refusal
// costs a second, to take back what the other slots did.
func TestSplitOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := newSplitFixture(t)
	now := time.Now()
	issue := func(req authd.IssueRequest) error { _, err := f.s.IssueCode(ctx, req); return err }
	consume := func(req authd.ConsumeRequest) error { _, err := f.s.ConsumeCode(ctx, req); return err }
	// Load the scripts: the first call of each runs them by EVAL too.
	warm := newAddress()
	if err := issue(splitIssue(warm, "192.0.2.1", "w1", now)); err != nil {
		t.Fatal(err)
	}
	if err := consume(splitConsume(warm, "192.0.2.1", "w1", now)); err != nil {
		t.Fatal(err)
	}
	// A refusal (the cooldown) loads the compensations' scripts; four
	// tries spend 192.0.2.9's verify limit of 3.
	_ = issue(splitIssue(warm, "192.0.2.1", "w2", now))
	for range 4 {
		_ = consume(splitConsume(newAddress(), "192.0.2.9", "x", now))
	}

	var err error

	a := newAddress()
	if n := f.trips(func() { err = issue(splitIssue(a, "192.0.2.2", "i1", now)) }); err != nil || n != 1 {
		t.Errorf("IssueCode: %d round trips, err %v; want 1, nil", n, err)
	}
	if n := f.trips(func() { err = consume(splitConsume(a, "192.0.2.2", "wrong", now)) }); !errors.Is(err, authd.ErrInvalidCode) || n != 1 {
		t.Errorf("ConsumeCode, wrong code: %d round trips, err %v; want 1, ErrInvalidCode", n, err)
	}
	if n := f.trips(func() { err = consume(splitConsume(a, "192.0.2.2", "i1", now)) }); err != nil || n != 1 {
		t.Errorf("ConsumeCode: %d round trips, err %v; want 1, nil", n, err)
	}
	// Refusals: one more round trip, only when another slot has something
	// to take back.
	if n := f.trips(func() { err = issue(splitIssue(a, "192.0.2.2", "i2", now)) }); authd.ErrorCode(err) != authd.ERATELIMITED || n != 2 {
		t.Errorf("IssueCode in the cooldown: %d round trips, err %v; want 2, %s", n, err, authd.ERATELIMITED)
	}
	if n := f.trips(func() { err = consume(splitConsume(a, "192.0.2.9", "i1", now)) }); authd.ErrorCode(err) != authd.ERATELIMITED || n != 1 {
		t.Errorf("ConsumeCode refused for its IP, no code: %d round trips, err %v; want 1, %s", n, err, authd.ERATELIMITED)
	}
}

// TestSplitIssueRefusalUndone: when the client-IP or project limit refuses
// a request whose address script went through in the same pipeline, the
// address's state (code, cooldown, codes per address), the mail stream,
// the delivery status and the other limit end exactly as they were.
func TestSplitIssueRefusalUndone(t *testing.T) {
	ctx := context.Background()
	for _, refuser := range []string{"send_per_ip", "mails_per_project"} {
		t.Run(refuser, func(t *testing.T) {
			f := newSplitFixture(t)
			t0 := time.Now()
			a := newAddress()
			// A live code whose cooldown is over (its key still there),
			// which a new code would replace, with its job queued.
			if _, err := f.s.IssueCode(ctx, splitIssue(a, "192.0.2.1", "old", t0.Add(-2*time.Minute))); err != nil {
				t.Fatal(err)
			}
			now := t0
			req := splitIssue(a, "192.0.2.2", "new", now)
			switch refuser {
			case "send_per_ip":
				req.SendPerIP = authd.Rate{N: 1, Period: time.Minute}
				spend := splitIssue(newAddress(), "192.0.2.2", "spent", now)
				spend.SendPerIP = req.SendPerIP
				if _, err := f.s.IssueCode(ctx, spend); err != nil {
					t.Fatal(err)
				}
			case "mails_per_project":
				// "old" and "spent" left the project's bucket fuller than
				// one mail an hour allows.
				req.MailsPerProject = authd.Rate{N: 1, Period: time.Hour}
				spend := splitIssue(newAddress(), "192.0.2.3", "spent", now)
				if _, err := f.s.IssueCode(ctx, spend); err != nil {
					t.Fatal(err)
				}
			}
			before := f.snapshot(t)
			res, err := f.s.IssueCode(ctx, req)
			var e *authd.Error
			if !errors.As(err, &e) || e.Limit != refuser {
				t.Fatalf("IssueCode: %v, want refused by %s", err, refuser)
			}
			wantSameState(t, "after the refusal", before, f.snapshot(t))
			if refuser == "mails_per_project" {
				// As single mode: the IP's state without this request.
				if want := (authd.LimitState{Limit: 10, Remaining: 10, Reset: 0}); res.IP != want {
					t.Errorf("IP = %+v, want %+v", res.IP, want)
				}
			}
			cur, err := f.s.IsCurrent(ctx, a, "shop", "old", now)
			if err != nil || !cur {
				t.Errorf("IsCurrent(old) = %v, %v; want true", cur, err)
			}
		})
	}
}

// TestSplitIssueUndoKeepsNewer: a newer code stored between a refused
// request's two round trips stays, with its cooldown; the refused
// request's mail job still goes, and its codes-per-address event is still
// given back.
func TestSplitIssueUndoKeepsNewer(t *testing.T) {
	ctx := context.Background()
	f := newSplitFixture(t)
	plain := redis.New(f.c, redis.Options{Prefix: f.prefix, Split: true})
	now := time.Now()
	a := newAddress()
	// Spend the IP.
	spend := splitIssue(newAddress(), "192.0.2.2", "spent", now)
	spend.SendPerIP = authd.Rate{N: 1, Period: time.Minute}
	if _, err := f.s.IssueCode(ctx, spend); err != nil {
		t.Fatal(err)
	}
	refused := splitIssue(a, "192.0.2.2", "refused", now)
	refused.SendPerIP = spend.SendPerIP
	refused.ResendCooldown = 0 // so that the newer one is let through
	newer := splitIssue(a, "192.0.2.3", "newer", now)
	newer.ResendCooldown = 0
	var newerErr error
	fn := func() { _, newerErr = plain.IssueCode(ctx, newer) }
	f.after.fn.Store(&fn)
	_, err := f.s.IssueCode(ctx, refused)
	if !isLimitErr(err, "send_per_ip") {
		t.Fatalf("IssueCode: %v, want refused by send_per_ip", err)
	}
	if newerErr != nil {
		t.Fatalf("newer IssueCode: %v", newerErr)
	}
	for id, want := range map[string]bool{"newer": true, "refused": false} {
		if cur, err := f.s.IsCurrent(ctx, a, "shop", id, now); err != nil || cur != want {
			t.Errorf("IsCurrent(%s) = %v, %v; want %v", id, cur, err, want)
		}
	}
	// Only the newer code's job is queued for a.
	var codes []string
	for _, k := range f.c.Keys(ctx, f.prefix+"*:mail").Val() {
		for _, m := range f.c.XRange(ctx, k, "-", "+").Val() {
			if m.Values["a"] == a {
				codes = append(codes, fmt.Sprint(m.Values["c"]))
			}
		}
	}
	if fmt.Sprint(codes) != "[newer]" {
		t.Errorf("jobs queued for the address: %v, want [newer]", codes)
	}
	if _, err := f.s.Delivery(ctx, refused.Job.DeliveryID, now); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Errorf("refused request's delivery: %v, want %s", err, authd.ENOTFOUND)
	}
	// One event counted against the address (the newer code's), of 5.
	for i := range 4 {
		req := splitIssue(a, fmt.Sprintf("198.51.100.%d", i), fmt.Sprintf("more%d", i), now)
		req.Project = fmt.Sprintf("p%d", i)
		req.Job = nil
		if _, err := f.s.IssueCode(ctx, req); err != nil {
			t.Fatalf("code %d for the address: %v", i+2, err)
		}
	}
	last := splitIssue(a, "198.51.100.9", "last", now)
	last.Project, last.Job = "p9", nil
	if _, err := f.s.IssueCode(ctx, last); !isLimitErr(err, "codes_per_address") {
		t.Errorf("sixth code: %v, want refused by codes_per_address", err)
	}
}

// TestSplitConsumeRefusalUndone: a try refused for its client IP, whose
// address script ran in the same pipeline, is taken back exactly: a right
// code is put back with its attempts, a wrong one's attempt and failure
// are uncounted. As in single mode, where such a try is never made.
func TestSplitConsumeRefusalUndone(t *testing.T) {
	ctx := context.Background()
	f := newSplitFixture(t)
	now := time.Now()
	a := newAddress()
	if _, err := f.s.IssueCode(ctx, splitIssue(a, "192.0.2.1", "code", now)); err != nil {
		t.Fatal(err)
	}
	// One wrong try counted, from another IP.
	if _, err := f.s.ConsumeCode(ctx, splitConsume(a, "192.0.2.5", "wrong", now)); !errors.Is(err, authd.ErrInvalidCode) {
		t.Fatalf("wrong try: %v", err)
	}
	// Spend an IP's three tries elsewhere.
	for range 3 {
		_, _ = f.s.ConsumeCode(ctx, splitConsume(newAddress(), "192.0.2.6", "x", now))
	}
	for _, tc := range []struct{ name, id string }{{"right code", "code"}, {"wrong code", "wrong"}} {
		before := f.snapshot(t)
		_, err := f.s.ConsumeCode(ctx, splitConsume(a, "192.0.2.6", tc.id, now))
		if !isLimitErr(err, "verify_per_ip") {
			t.Fatalf("%s: %v, want refused by verify_per_ip", tc.name, err)
		}
		wantSameState(t, tc.name, before, f.snapshot(t))
	}
	// The wrong try counted once, from the other IP, the refused ones not.
	res, err := f.s.ConsumeCode(ctx, splitConsume(a, "192.0.2.5", "code", now))
	if err != nil || res.Record.Attempts != 1 || res.Record.ID != "code" {
		t.Errorf("ConsumeCode = %+v, %v; want the code with 1 attempt", res.Record, err)
	}
}

func isLimitErr(err error, limit string) bool {
	var e *authd.Error
	return errors.As(err, &e) && e.Code == authd.ERATELIMITED && e.Limit == limit
}
