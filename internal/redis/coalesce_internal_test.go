package redis

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/testenv"
)

// The coalescer against the real Redis: concurrent scripts share
// pipelines, each caller gets its own reply and keeps its own deadline,
// and a script whose caller gave up before it was sent never runs.

// echo returns its one argument, and counts its runs in its one key.
var echo = goredis.NewScript("redis.call('INCR', KEYS[1]) return ARGV[1]")

// pipelineCounter counts the pipelines a client sends and the largest.
type pipelineCounter struct {
	n, largest atomic.Int64
	hold       chan struct{} // when set, the first command waits for it to close
	held       atomic.Bool
	slow       atomic.Int64 // each command waits so long (ns) first: Redis slow
	fail       atomic.Bool  // then fails without a reply, as a timeout
}

var errCut = errors.New("i/o timeout (test)")

func (h *pipelineCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *pipelineCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if h.hold != nil && h.held.CompareAndSwap(false, true) {
			<-h.hold
		}
		time.Sleep(time.Duration(h.slow.Load()))
		if h.fail.Load() {
			return errCut
		}
		return next(ctx, cmd)
	}
}

func (h *pipelineCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		for {
			l := h.largest.Load()
			if int64(len(cmds)) <= l || h.largest.CompareAndSwap(l, int64(len(cmds))) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

// testCoalescer returns a coalescer of one lane over a client of the
// test Redis that h watches, and a key of the test's own for echo.
func testCoalescer(t *testing.T, h *pipelineCounter) (*coalescer, *goredis.Client, string) {
	t.Helper()
	o, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	client := goredis.NewClient(o)
	client.AddHook(h)
	key := "authd-test:coalesce:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	co := newCoalescer(client, 1)
	t.Cleanup(func() {
		co.close()
		client.Del(context.Background(), key)
		client.Close()
	})
	return co, client, key
}

func TestCoalescerSharesRoundTrips(t *testing.T) {
	h := &pipelineCounter{}
	co, client, key := testCoalescer(t, h)

	const callers, rounds = 64, 5
	for range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				<-start
				want := "r" + strconv.Itoa(i)
				v, err := co.run(context.Background(), scriptCall{echo, []string{key}, []any{want}})
				if err != nil || v != want {
					t.Errorf("caller %d: %v, %v; want its own reply %q", i, v, err, want)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if n, _ := client.Get(context.Background(), key).Int(); n != callers*rounds {
		t.Errorf("the script ran %d times, want %d", n, callers*rounds)
	}
	if h.largest.Load() < 2 {
		t.Errorf("%d pipelines, the largest of %d: %d concurrent callers never shared a round trip", h.n.Load(), h.largest.Load(), callers)
	}
	t.Logf("%d scripts in %d pipelines (the rest alone), the largest of %d", callers*rounds, h.n.Load(), h.largest.Load())
}

// A caller keeps its own deadline while its lane is held up, and its
// script, not yet sent, is then never sent.
func TestCoalescerCallerDeadline(t *testing.T) {
	h := &pipelineCounter{hold: make(chan struct{})}
	co, client, key := testCoalescer(t, h)

	first := make(chan error, 1)
	go func() {
		_, err := co.run(context.Background(), scriptCall{echo, []string{key}, []any{"first"}})
		first <- err
	}()
	for !h.held.Load() { // the lane is in the first script's command
		time.Sleep(time.Millisecond)
	}
	const waiting = 8
	var wg sync.WaitGroup
	for range waiting {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			began := time.Now()
			_, err := co.run(ctx, scriptCall{echo, []string{key}, []any{"late"}})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a caller past its deadline: %v, want context.DeadlineExceeded", err)
			}
			if took := time.Since(began); took > time.Second {
				t.Errorf("a caller with a 100 ms deadline returned after %v", took)
			}
		})
	}
	wg.Wait()
	close(h.hold)
	if err := <-first; err != nil {
		t.Fatalf("the first script: %v", err)
	}
	// The lane, free again, skips the scripts whose callers are gone.
	if v, err := co.run(context.Background(), scriptCall{echo, []string{key}, []any{"after"}}); err != nil || v != "after" {
		t.Fatalf("after: %v, %v", v, err)
	}
	if n, _ := client.Get(context.Background(), key).Int(); n != 2 {
		t.Errorf("the script ran %d times, want 2: the first and the one after, none of those given up", n)
	}
}

// Scripts Redis no longer has (a restart, SCRIPT FLUSH) are loaded, in
// a shared pipeline as alone.
func TestCoalescerNoScript(t *testing.T) {
	h := &pipelineCounter{}
	co, client, key := testCoalescer(t, h)
	for range 3 {
		if err := client.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Go(func() {
				want := strconv.Itoa(i)
				if v, err := co.run(context.Background(), scriptCall{echo, []string{key}, []any{want}}); err != nil || v != want {
					t.Errorf("after SCRIPT FLUSH: %v, %v; want %q", v, err, want)
				}
			})
		}
		wg.Wait()
	}
	if n, _ := client.Get(context.Background(), key).Int(); n != 3*32 {
		t.Errorf("the script ran %d times, want %d", n, 3*32)
	}
	if h.largest.Load() < 2 {
		t.Errorf("no pipeline of more than one script: the shared path's NOSCRIPT was not tried")
	}
}

// A pipeline's failure is each of its callers'.
func TestCoalescerFailure(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	co := newCoalescer(client, 2)
	defer co.close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := co.run(context.Background(), scriptCall{echo, []string{"k"}, []any{"v"}}); err == nil {
				t.Error("a script against no server: no error")
			}
		})
	}
	wg.Wait()
}

// close leaves no caller waiting: those queued behind a busy lane are
// answered, run or errClosed, even without a deadline; later ones get
// errClosed at once.
func TestCoalescerClose(t *testing.T) {
	h := &pipelineCounter{hold: make(chan struct{})}
	co, _, key := testCoalescer(t, h)
	go co.run(context.Background(), scriptCall{echo, []string{key}, []any{"first"}})
	for !h.held.Load() {
		time.Sleep(time.Millisecond)
	}
	const queued = 8
	done := make(chan error, queued)
	for range queued {
		go func() {
			_, err := co.run(context.Background(), scriptCall{echo, []string{key}, []any{"queued"}})
			done <- err
		}()
	}
	for len(co.queue) < queued {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { co.close(); close(closed) }()
	time.Sleep(20 * time.Millisecond) // close is waiting for the held lane
	close(h.hold)
	for range queued {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, errClosed) {
				t.Errorf("a queued caller at close: %v, want its reply or errClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a queued caller was left waiting by close")
		}
	}
	<-closed
	if _, err := co.run(context.Background(), scriptCall{echo, []string{key}, []any{"v"}}); !errors.Is(err, errClosed) {
		t.Errorf("after close: %v, want errClosed", err)
	}
}

// With Redis slow (200 ms a round trip), a caller whose deadline is
// nearer (100 ms) is answered at once, unsent: nothing it would have
// written is stored, and it does not wait out its deadline. One with
// time enough is served; once Redis is quick again, so are they all.
func TestCoalescerNoTime(t *testing.T) {
	h := &pipelineCounter{}
	co, client, key := testCoalescer(t, h)
	call := scriptCall{echo, []string{key}, []any{"x"}}

	h.slow.Store(int64(200 * time.Millisecond))
	for range 4 { // the round trips learnt: 200 ms
		if _, err := co.run(context.Background(), call); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := co.run(ctx, call)
	cancel()
	if !errors.Is(err, errNoTime) {
		t.Errorf("a 100 ms deadline with 200 ms round trips: %v, want errNoTime", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	if _, err := co.run(ctx, call); err != nil {
		t.Errorf("a 2 s deadline with 200 ms round trips: %v", err)
	}
	cancel()
	if n, _ := client.Get(context.Background(), key).Int(); n != 5 {
		t.Errorf("the script ran %d times, want 5: not for the caller without time", n)
	}

	h.slow.Store(0)
	time.Sleep(10 * rttHalfLife) // the slow round trips forgotten
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := co.run(ctx, call); err != nil {
		t.Errorf("a 100 ms deadline, a second after Redis was slow: %v", err)
	}
}

// A round trip that failed without Redis's answer (a timeout, a cut
// connection) teaches nothing: after one of 300 ms, a caller with 100 ms
// left is still served.
func TestCoalescerLearnsFromAnswersOnly(t *testing.T) {
	h := &pipelineCounter{}
	co, _, key := testCoalescer(t, h)
	call := scriptCall{echo, []string{key}, []any{"x"}}
	h.slow.Store(int64(300 * time.Millisecond))
	h.fail.Store(true)
	if _, err := co.run(context.Background(), call); !errors.Is(err, errCut) {
		t.Fatalf("the cut round trip: %v, want errCut", err)
	}
	h.slow.Store(0)
	h.fail.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if v, err := co.run(ctx, call); err != nil || v != "x" {
		t.Errorf("after a cut round trip of 300 ms, a 100 ms deadline: %v, %v; want served", v, err)
	}
}
