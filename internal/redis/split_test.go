package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// splitFixture is a store on a client whose round trips are counted, and
// that can run a function between a call's first round trip and whatever
// follows it.
type splitFixture struct {
	c      goredis.UniversalClient // plain, for looking
	prefix string
	hook   *countingHook
	after  *afterFirst
	s      *redis.Store
}

// newSplitFixture is a fixture on a Redis of m's kind, the store given
// opts (its prefix and split mode are the fixture's).
func newSplitFixture(t *testing.T, m mode, opts redis.Options) *splitFixture {
	t.Helper()
	c := m.client(t)
	f := &splitFixture{c: c, prefix: prefix(t, c), hook: &countingHook{}, after: &afterFirst{}}
	opts.Prefix, opts.Split = f.prefix, m.split
	f.s = redis.New(hooked(t, c, f.hook, f.after), opts)
	if err := redis.LoadScripts(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return f
}

// plain is another store on the fixture's keys, its calls neither counted
// nor hooked.
func (f *splitFixture) plain(m mode) *redis.Store {
	return redis.New(f.c, redis.Options{Prefix: f.prefix, Split: m.split})
}

// afterFirst runs fn once, right after the next round trip (a command or
// a pipeline) reached the server: a concurrent request landing between a
// split-mode call's round trips.
type afterFirst struct{ fn atomic.Pointer[func()] }

func (h *afterFirst) run() {
	if fn := h.fn.Swap(nil); fn != nil {
		(*fn)()
	}
}

func (h *afterFirst) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *afterFirst) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.run()
		return err
	}
}
func (h *afterFirst) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		h.run()
		return err
	}
}

// trips returns how many round trips fn took.
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

// snapshot is every key under the fixture's prefix, as it stands at now.
// Empty streams are left out: the queue keeps its 64 streams (claim.lua
// makes their group). So are strings holding a time not after now (GCRA
// buckets, cooldowns): they mean what a missing key means, a full bucket
// or no cooldown, and a refund may delete one instead of putting back.
func (f *splitFixture) snapshot(t *testing.T, now time.Time) map[string]keyState {
	t.Helper()
	ctx := context.Background()
	out := map[string]keyState{}
	for _, k := range allKeys(t, f.c, f.prefix+"*") {
		var v string
		switch typ := f.c.Type(ctx, k).Val(); typ {
		case "string":
			v = f.c.Get(ctx, k).Val()
			if at, err := strconv.ParseInt(v, 10, 64); err == nil && at <= now.UnixMicro() {
				continue
			}
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
		case "zset":
			v = fmt.Sprint(f.c.ZRangeWithScores(ctx, k, 0, -1).Val())
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

// newDeliveryID is a delivery id for a mail to address, as the flow makes
// them.
func newDeliveryID(t testing.TB, address string) string {
	t.Helper()
	id, err := authd.NewDeliveryID(rand.Reader, authd.Partition(address))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// splitIssue is a request with every limit on and a mail job.
func splitIssue(t testing.TB, address, ip, id string, now time.Time) authd.IssueRequest {
	exp := now.Add(5 * time.Minute)
	return authd.IssueRequest{
		Address: addrOf(address), Project: "shop", ClientIP: ip, Now: now,
		Record:          authd.CodeRecord{ID: id, Hash: []byte("hash of " + id), ExpiresAt: exp},
		ResendCooldown:  time.Minute,
		CodesPerAddress: authd.Rate{N: 5, Period: time.Hour},
		SendPerIP:       authd.Rate{N: 10, Period: time.Minute},
		MailsPerProject: authd.Rate{N: 100, Period: time.Hour},
		Job: &authd.MailJob{
			DeliveryID: newDeliveryID(t, address), Address: addrOf(address), Project: "shop", CodeID: id,
			ExpiresAt: exp, ReplaceableAt: now.Add(time.Minute), Sealed: []byte("sealed " + id),
		},
	}
}

func splitConsume(address, ip, id string, now time.Time) authd.ConsumeRequest {
	return authd.ConsumeRequest{
		Address: addrOf(address), Project: "shop", ClientIP: ip, Now: now, Hash: []byte("hash of " + id),
		AttemptsPerCode: 5, FailuresPerAddress: authd.Rate{N: 10, Period: time.Hour},
		VerifyPerIP: authd.Rate{N: 3, Period: time.Minute},
	}
}

// TestSplitRoundTrips counts round trips (DESIGN.md §3). A single Redis:
// one script per call, refused or not. A Redis Cluster: the limits in
// other slots first (one pipeline), then the address's script; a refusal
// by a limit costs nothing more unless another limit had allowed (its
// token is given back), a refusal by the address costs the refunds.
func TestSplitRoundTrips(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	type call struct {
		name  string
		run   func(s *redis.Store) error
		trips map[bool]int64 // by split
		want  string         // the error's limit, "code", or "" for success
	}
	issue := func(req authd.IssueRequest) func(*redis.Store) error {
		return func(s *redis.Store) error { _, err := s.IssueCode(ctx, req); return err }
	}
	consume := func(req authd.ConsumeRequest) func(*redis.Store) error {
		return func(s *redis.Store) error { _, err := s.ConsumeCode(ctx, req); return err }
	}
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			f := newSplitFixture(t, m, redis.Options{})
			split := m.clusterPath()
			// Load the scripts: the first call of each runs them by EVAL
			// too. Four tries spend 192.0.2.9's verify limit of 3; one
			// send 192.0.2.8's send limit of 1.
			warm := newAddress()
			for _, fn := range []func(*redis.Store) error{
				issue(splitIssue(t, warm, "192.0.2.1", "w1", now)),
				issue(splitIssue(t, warm, "192.0.2.1", "w2", now)), // cooldown: refunds
				consume(splitConsume(warm, "192.0.2.1", "w1", now)),
			} {
				_ = fn(f.s)
			}
			for range 4 {
				_, _ = f.s.ConsumeCode(ctx, splitConsume(newAddress(), "192.0.2.9", "x", now))
			}
			spend := splitIssue(t, newAddress(), "192.0.2.8", "spent", now)
			spend.SendPerIP = authd.Rate{N: 1, Period: time.Minute}
			if _, err := f.s.IssueCode(ctx, spend); err != nil {
				t.Fatal(err)
			}
			// A project with one mail an hour, spent.
			spentProject := splitIssue(t, newAddress(), "192.0.2.7", "p1", now)
			spentProject.Project, spentProject.MailsPerProject = "full", authd.Rate{N: 1, Period: time.Hour}
			if _, err := f.s.IssueCode(ctx, spentProject); err != nil {
				t.Fatal(err)
			}

			a := newAddress()
			ipRefused := splitIssue(t, newAddress(), "192.0.2.8", "r1", now)
			ipRefused.SendPerIP = spend.SendPerIP
			ipRefusedAlone := ipRefused
			ipRefusedAlone.MailsPerProject = authd.Rate{}
			projectRefused := splitIssue(t, newAddress(), "192.0.2.6", "r2", now)
			projectRefused.Project, projectRefused.MailsPerProject = "full", spentProject.MailsPerProject
			limitsOff := splitIssue(t, newAddress(), "192.0.2.5", "off", now)
			limitsOff.SendPerIP, limitsOff.MailsPerProject = authd.Rate{}, authd.Rate{}
			for _, c := range []call{
				{"IssueCode", issue(splitIssue(t, a, "192.0.2.2", "i1", now)), map[bool]int64{false: 1, true: 2}, ""},
				{"ConsumeCode, wrong code", consume(splitConsume(a, "192.0.2.2", "wrong", now)), map[bool]int64{false: 1, true: 2}, "code"},
				{"ConsumeCode", consume(splitConsume(a, "192.0.2.2", "i1", now)), map[bool]int64{false: 1, true: 2}, ""},
				{"IssueCode in the cooldown", issue(splitIssue(t, a, "192.0.2.2", "i2", now)), map[bool]int64{false: 1, true: 3}, "cooldown"},
				{"IssueCode refused for its IP, project limit off", issue(ipRefusedAlone), map[bool]int64{false: 1, true: 1}, "send_per_ip"},
				{"IssueCode refused for its IP, project's token given back", issue(ipRefused), map[bool]int64{false: 1, true: 2}, "send_per_ip"},
				{"IssueCode refused for its project, IP's token given back", issue(projectRefused), map[bool]int64{false: 1, true: 2}, "mails_per_project"},
				{"IssueCode, both limits off", issue(limitsOff), map[bool]int64{false: 1, true: 1}, ""},
				{"ConsumeCode refused for its IP", consume(splitConsume(a, "192.0.2.9", "i1", now)), map[bool]int64{false: 1, true: 1}, "verify_per_ip"},
			} {
				var err error
				n := f.trips(func() { err = c.run(f.s) })
				var got string
				var e *authd.Error
				switch {
				case errors.Is(err, authd.ErrInvalidCode):
					got = "code"
				case errors.As(err, &e) && e.Code == authd.ERATELIMITED:
					got = e.Limit
				case err != nil:
					got = err.Error()
				}
				if got != c.want || n != c.trips[split] {
					t.Errorf("%s: %d round trips, %q; want %d, %q", c.name, n, got, c.trips[split], c.want)
				}
			}
		})
	}
}

// TestSplitRefusalLeavesNothing: whichever limit refuses a send, the
// address's state (code, cooldown, codes per address), the mail stream,
// the delivery statuses and the other limits end exactly as they were: on
// a Redis Cluster the limits' tokens are given back, the address's script
// writes nothing.
func TestSplitRefusalLeavesNothing(t *testing.T) {
	for _, m := range clusterPaths {
		for _, refuser := range []string{"send_per_ip", "mails_per_project", "cooldown", "codes_per_address"} {
			t.Run(m.name+"/"+refuser, func(t *testing.T) {
				testRefusalLeavesNothing(t, m, refuser)
			})
		}
	}
}

func testRefusalLeavesNothing(t *testing.T, m mode, refuser string) {
	ctx := context.Background()
	f := newSplitFixture(t, m, redis.Options{})
	t0 := time.Now()
	a := newAddress()
	// A live code whose cooldown is over (its key still there),
	// which a new code would replace, with its job queued.
	old := splitIssue(t, a, "192.0.2.1", "old", t0.Add(-2*time.Minute))
	if refuser == "cooldown" {
		old.Now = t0 // still cooling down
	}
	if _, err := f.s.IssueCode(ctx, old); err != nil {
		t.Fatal(err)
	}
	now := t0
	req := splitIssue(t, a, "192.0.2.2", "new", now)
	switch refuser {
	case "send_per_ip":
		req.SendPerIP = authd.Rate{N: 1, Period: time.Minute}
		spend := splitIssue(t, newAddress(), "192.0.2.2", "spent", now)
		spend.SendPerIP = req.SendPerIP
		if _, err := f.s.IssueCode(ctx, spend); err != nil {
			t.Fatal(err)
		}
	case "mails_per_project":
		// "old" and "spent" left the project's bucket fuller than
		// one mail an hour allows.
		req.MailsPerProject = authd.Rate{N: 1, Period: time.Hour}
		spend := splitIssue(t, newAddress(), "192.0.2.3", "spent", now)
		if _, err := f.s.IssueCode(ctx, spend); err != nil {
			t.Fatal(err)
		}
	case "codes_per_address":
		req.CodesPerAddress = authd.Rate{N: 1, Period: time.Hour}
	}
	before := f.snapshot(t, now)
	res, err := f.s.IssueCode(ctx, req)
	var e *authd.Error
	if !errors.As(err, &e) || e.Limit != refuser {
		t.Fatalf("IssueCode: %v, want refused by %s", err, refuser)
	}
	wantSameState(t, "after the refusal", before, f.snapshot(t, now))
	if refuser != "send_per_ip" {
		// As single mode: the IP's state without this request.
		if want := (authd.LimitState{Limit: 10, Remaining: 10, Reset: 0}); res.IP != want {
			t.Errorf("IP = %+v, want %+v", res.IP, want)
		}
	}
	cur, err := f.s.IsCurrent(ctx, addrOf(a), "shop", "old", now)
	if err != nil || !cur {
		t.Errorf("IsCurrent(old) = %v, %v; want true", cur, err)
	}
	if _, err := f.s.Delivery(ctx, req.Job.DeliveryID, now); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Errorf("refused request's delivery: %v, want %s", err, authd.ENOTFOUND)
	}
}

// TestSplitNewerBetweenRoundTrips: a newer code stored between a refused
// request's round trips stays, with its job; the refused request leaves
// no job, no status, and counts against nothing.
func TestSplitNewerBetweenRoundTrips(t *testing.T) {
	ctx := context.Background()
	for _, m := range clusterPaths {
		for _, refuser := range []string{"send_per_ip", "cooldown"} {
			t.Run(m.name+"/"+refuser, func(t *testing.T) {
				f := newSplitFixture(t, m, redis.Options{})
				plain := f.plain(m)
				now := time.Now()
				a := newAddress()
				refused := splitIssue(t, a, "192.0.2.2", "refused", now)
				newer := splitIssue(t, a, "192.0.2.3", "newer", now)
				if refuser == "send_per_ip" {
					// Spend the IP. The newer code needs no cooldown of the
					// refused one's to be let through.
					spend := splitIssue(t, newAddress(), "192.0.2.2", "spent", now)
					spend.SendPerIP = authd.Rate{N: 1, Period: time.Minute}
					if _, err := f.s.IssueCode(ctx, spend); err != nil {
						t.Fatal(err)
					}
					refused.SendPerIP = spend.SendPerIP
				}
				// The newer one lands after the refused one's limits were taken
				// (its first round trip), and starts a cooldown.
				var newerErr error
				fn := func() { _, newerErr = plain.IssueCode(ctx, newer) }
				f.after.fn.Store(&fn)
				_, err := f.s.IssueCode(ctx, refused)
				if !isLimitErr(err, refuser) {
					t.Fatalf("IssueCode: %v, want refused by %s", err, refuser)
				}
				if newerErr != nil {
					t.Fatalf("newer IssueCode: %v", newerErr)
				}
				for id, want := range map[string]bool{"newer": true, "refused": false} {
					if cur, err := f.s.IsCurrent(ctx, addrOf(a), "shop", id, now); err != nil || cur != want {
						t.Errorf("IsCurrent(%s) = %v, %v; want %v", id, cur, err, want)
					}
				}
				// Only the newer code's job is queued for a.
				var codes []string
				for _, k := range allKeys(t, f.c, f.prefix+"*:mail") {
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
				// The refused request's IP token went back (or was never
				// taken): a burst of ten is left to 192.0.2.2 but the spent
				// one.
				if refuser == "cooldown" {
					if ttl := f.c.PTTL(ctx, f.prefix+"{ip:192.0.2.2}:send").Val(); ttl > 0 {
						t.Errorf("the refused request's IP token is still taken (TTL %v)", ttl)
					}
				}
				// One event counted against the address (the newer code's), of 5.
				for i := range 4 {
					req := splitIssue(t, a, fmt.Sprintf("198.51.100.%d", i), fmt.Sprintf("more%d", i), now)
					req.Project = fmt.Sprintf("p%d", i)
					req.Job = nil
					if _, err := f.s.IssueCode(ctx, req); err != nil {
						t.Fatalf("code %d for the address: %v", i+2, err)
					}
				}
				last := splitIssue(t, a, "198.51.100.9", "last", now)
				last.Project, last.Job = "p9", nil
				if _, err := f.s.IssueCode(ctx, last); !isLimitErr(err, "codes_per_address") {
					t.Errorf("sixth code: %v, want refused by codes_per_address", err)
				}
			})
		}
	}
}

// TestSplitConsumeRefusalLeavesNothing: a try refused for its client IP
// touches nothing of the address: a right code stays with its attempts, a
// wrong one counts no attempt and no failure.
func TestSplitConsumeRefusalLeavesNothing(t *testing.T) {
	for _, m := range clusterPaths {
		t.Run(m.name, func(t *testing.T) { testConsumeRefusalLeavesNothing(t, m) })
	}
}

func testConsumeRefusalLeavesNothing(t *testing.T, m mode) {
	ctx := context.Background()
	f := newSplitFixture(t, m, redis.Options{})
	now := time.Now()
	a := newAddress()
	if _, err := f.s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", "code", now)); err != nil {
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
		before := f.snapshot(t, now)
		_, err := f.s.ConsumeCode(ctx, splitConsume(a, "192.0.2.6", tc.id, now))
		if !isLimitErr(err, "verify_per_ip") {
			t.Fatalf("%s: %v, want refused by verify_per_ip", tc.name, err)
		}
		wantSameState(t, tc.name, before, f.snapshot(t, now))
	}
	// The wrong try counted once, from the other IP, the refused ones not.
	res, err := f.s.ConsumeCode(ctx, splitConsume(a, "192.0.2.5", "code", now))
	if err != nil || res.Record.Attempts != 1 || res.Record.ID != "code" {
		t.Errorf("ConsumeCode = %+v, %v; want the code with 1 attempt", res.Record, err)
	}
}

// TestRefusedSendNeverQueued: a refused send leaves no job in the queue
// at any time — a claimer polling all along never sees one — and no
// status: refused by the cooldown of a live code of its address, or by
// the client-IP or project limit while its address would have taken it.
// (Split mode once queued such a job and took it back a round trip later;
// a worker that took it in between would have sent it without checking
// its code, its resend cooldown still running.)
func TestRefusedSendNeverQueued(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			f := newSplitFixture(t, m, redis.Options{})
			spy := f.plain(m)
			now := time.Now()
			a := newAddress()
			first := splitIssue(t, a, "192.0.2.1", "first", now)
			if _, err := f.s.IssueCode(ctx, first); err != nil {
				t.Fatal(err)
			}
			// The spy claims everything, again and again: a claim timeout
			// of 0 makes every claim lapse at once.
			var (
				stop  = make(chan struct{})
				done  = make(chan struct{})
				mu    sync.Mutex
				seen  = map[string]int{}
				polls int
			)
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					jobs, err := spy.Claim(ctx, "spy", 100, 0, now)
					mu.Lock()
					polls++
					if err != nil {
						seen["error: "+err.Error()]++
					}
					for _, j := range jobs {
						seen[j.CodeID]++
					}
					mu.Unlock()
				}
			}()
			refused := func(w, i int) (authd.IssueRequest, string) {
				id := fmt.Sprintf("refused-%d-%d", w, i)
				ip := fmt.Sprintf("198.51.%d.%d", w, i)
				switch i % 3 {
				case 0: // the live code cools down
					return splitIssue(t, a, ip, id, now.Add(time.Second)), "cooldown"
				case 1: // the first send left 192.0.2.1 less than one a minute
					req := splitIssue(t, newAddress(), "192.0.2.1", id, now)
					req.SendPerIP = authd.Rate{N: 1, Period: time.Minute}
					return req, "send_per_ip"
				default: // and the project less than one an hour
					req := splitIssue(t, newAddress(), ip, id, now)
					req.MailsPerProject = authd.Rate{N: 1, Period: time.Hour}
					return req, "mails_per_project"
				}
			}
			var wg sync.WaitGroup
			var ids sync.Map
			for w := range 4 {
				wg.Go(func() {
					for i := range 60 {
						req, limit := refused(w, i)
						ids.Store(req.Job.DeliveryID, true)
						if _, err := f.s.IssueCode(ctx, req); !isLimitErr(err, limit) {
							t.Errorf("send %d/%d: %v, want refused by %s", w, i, err, limit)
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			<-done
			mu.Lock()
			defer mu.Unlock()
			if polls < 2 || seen["first"] == 0 {
				t.Fatalf("the spy polled %d times and saw %v: it did not watch", polls, seen)
			}
			for code, n := range seen {
				if code != "first" {
					t.Errorf("the spy claimed %s %d times", code, n)
				}
			}
			ids.Range(func(id, _ any) bool {
				if _, err := f.s.Delivery(ctx, id.(string), now); authd.ErrorCode(err) != authd.ENOTFOUND {
					t.Errorf("a refused send's delivery: %v, want %s", err, authd.ENOTFOUND)
				}
				return true
			})
			if keys := allKeys(t, f.c, f.prefix+"*:dlv:*"); len(keys) != 1 {
				t.Errorf("status keys %q, want only the first code's", keys)
			}
			// Nothing of the refused sends was left taken either.
			if keys := allKeys(t, f.c, f.prefix+"{ip:198.51.*"); len(keys) != 0 {
				t.Errorf("refused sends left IP tokens taken: %q", keys)
			}
		})
	}
}

func isLimitErr(err error, limit string) bool {
	var e *authd.Error
	return errors.As(err, &e) && e.Code == authd.ERATELIMITED && e.Limit == limit
}
