package mailer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

// syncBuffer is a log sink safe for the pool's workers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runPool starts p.Run and returns a channel closed when Run returns; the
// pool is closed at the end of the test.
func runPool(t testing.TB, p *mailer.Pool) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(context.Background()); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
		<-done
	})
	return done
}

func closePool(t testing.TB, p *mailer.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func quietOptions(o mailer.PoolOptions) mailer.PoolOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Backoff == 0 {
		o.Backoff = time.Millisecond
	}
	return o
}

func code(i int) string { return fmt.Sprintf("%06d", i) }

func TestPoolDelivers1000(t *testing.T) {
	srv := smtptest.Start(t)
	p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{}))
	runPool(t, p)

	const n = 1000
	ctx := context.Background()
	for i := range n {
		if err := p.Enqueue(ctx, message(fmt.Sprintf("user%d@example.com", i), code(i))); err != nil {
			t.Fatalf("Enqueue %d: %v", i, err)
		}
	}
	msgs := srv.Wait(t, n, 60*time.Second)
	closePool(t, p)

	seen := make(map[string]bool, n)
	for _, m := range msgs {
		c := smtptest.CodeFrom(m)
		if seen[c] {
			t.Errorf("code %s delivered twice", c)
		}
		seen[c] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct codes delivered, want %d", len(seen), n)
	}
	if st := p.Stats(); st.Enqueued != n || st.Sent != n || st.Retried != 0 || st.Queued != 0 {
		t.Errorf("Stats = %+v", st)
	}
	// 16 workers on kept connections: far fewer sessions than messages.
	if c := srv.Connections(); c > 32 {
		t.Errorf("%d messages used %d connections", n, c)
	}
}

func TestPoolDropsSuperseded(t *testing.T) {
	srv := smtptest.Start(t)
	// Even codes are still live; odd ones were replaced since.
	current := func(_ context.Context, m authd.Message) (bool, error) {
		i, err := strconv.Atoi(m.Code)
		return i%2 == 0, err
	}
	p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Current: current}))
	runPool(t, p)
	for i := range 10 {
		if err := p.Enqueue(context.Background(), message("ana@example.com", code(i))); err != nil {
			t.Fatal(err)
		}
	}
	closePool(t, p)

	if n := srv.Attempts(); n != 5 {
		t.Errorf("server got %d messages, want 5", n)
	}
	for _, m := range srv.Messages() {
		if i, _ := strconv.Atoi(smtptest.CodeFrom(m)); i%2 != 0 {
			t.Errorf("superseded code %s was sent", smtptest.CodeFrom(m))
		}
	}
	if st := p.Stats(); st.Sent != 5 || st.DroppedSuperseded != 5 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPoolRetries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		script      func(n int) *smtp.SMTPError
		maxAttempts int
		attempts    int // seen by the server
		delivered   int
		want        mailer.Stats
	}{
		{
			name: "4xx twice then success",
			script: func(n int) *smtp.SMTPError {
				if n <= 2 {
					return reply(451)
				}
				return nil
			},
			attempts: 3, delivered: 1,
			want: mailer.Stats{Enqueued: 1, Sent: 1, Retried: 2},
		},
		{
			name:     "5xx is not retried",
			script:   func(int) *smtp.SMTPError { return reply(550) },
			attempts: 1,
			want:     mailer.Stats{Enqueued: 1, FailedPermanent: 1},
		},
		{
			name:        "4xx until the attempts run out",
			script:      func(int) *smtp.SMTPError { return reply(421) },
			maxAttempts: 3, attempts: 3,
			want: mailer.Stats{Enqueued: 1, FailedTemporary: 1, Retried: 2},
		},
		{
			name: "4xx then 5xx",
			script: func(n int) *smtp.SMTPError {
				if n == 1 {
					return reply(452)
				}
				return reply(554)
			},
			attempts: 2,
			want:     mailer.Stats{Enqueued: 1, FailedPermanent: 1, Retried: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithReply(tc.script))
			var logs syncBuffer
			p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{
				MaxAttempts: tc.maxAttempts,
				Logger:      slog.New(slog.NewJSONHandler(&logs, nil)),
			}))
			runPool(t, p)
			if err := p.Enqueue(context.Background(), message("ana@example.com", "135790")); err != nil {
				t.Fatal(err)
			}
			closePool(t, p)

			if n := srv.Attempts(); n != tc.attempts {
				t.Errorf("server saw %d attempts, want %d", n, tc.attempts)
			}
			if n := len(srv.Messages()); n != tc.delivered {
				t.Errorf("server kept %d messages, want %d", n, tc.delivered)
			}
			if got := p.Stats(); got != tc.want {
				t.Errorf("Stats = %+v, want %+v", got, tc.want)
			}
			out := logs.String()
			if strings.Contains(out, "135790") || strings.Contains(out, "ana@example.com") {
				t.Errorf("the log holds the code or the address:\n%s", out)
			}
			if !strings.Contains(out, "a***@example.com") {
				t.Errorf("the log does not name the masked address:\n%s", out)
			}
		})
	}
}

func TestPoolExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }

	t.Run("expired before its turn", func(t *testing.T) {
		srv := smtptest.Start(t)
		p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Now: clock}))
		runPool(t, p)
		m := message("ana@example.com", "111111")
		m.ExpiresAt = now
		if err := p.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		closePool(t, p)
		if n := srv.Attempts(); n != 0 {
			t.Errorf("an expired code was sent")
		}
		if st := p.Stats(); st.DroppedExpired != 1 {
			t.Errorf("Stats = %+v", st)
		}
	})

	t.Run("no retry past expiry", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.WithReply(func(int) *smtp.SMTPError { return reply(451) }))
		p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Now: clock, Backoff: time.Minute, MaxBackoff: time.Minute}))
		runPool(t, p)
		m := message("ana@example.com", "222222")
		m.ExpiresAt = now.Add(10 * time.Second) // the first backoff is at least 30s
		if err := p.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		closePool(t, p)
		if n := srv.Attempts(); n != 1 {
			t.Errorf("attempts = %d, want 1", n)
		}
		if st := p.Stats(); st.FailedTemporary != 1 || st.Retried != 0 {
			t.Errorf("Stats = %+v", st)
		}
	})
}

func TestPoolCurrentError(t *testing.T) {
	srv := smtptest.Start(t)
	var mu sync.Mutex
	calls := 0
	current := func(context.Context, authd.Message) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return false, authd.Unavailable("code store", errors.New("connection refused"))
		}
		return true, nil
	}
	p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Current: current}))
	runPool(t, p)
	if err := p.Enqueue(context.Background(), message("ana@example.com", "333333")); err != nil {
		t.Fatal(err)
	}
	closePool(t, p)
	if st := p.Stats(); st.Sent != 1 || st.Retried != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// started returns a Current hook that reports every attempt on a channel.
func started() (func(context.Context, authd.Message) (bool, error), <-chan struct{}) {
	ch := make(chan struct{}, 100)
	return func(context.Context, authd.Message) (bool, error) {
		ch <- struct{}{}
		return true, nil
	}, ch
}

func TestPoolCloseWaitsForInFlight(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithDelay(300*time.Millisecond))
	current, began := started()
	p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Current: current}))
	runDone := runPool(t, p)
	if err := p.Enqueue(context.Background(), message("ana@example.com", "444444")); err != nil {
		t.Fatal(err)
	}
	if err := p.Enqueue(context.Background(), message("bob@example.com", "555555")); err != nil {
		t.Fatal(err)
	}
	<-began // one send is in flight

	closePool(t, p)
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("after Close the server has %d messages, want 2", n)
	}
	<-runDone
	if err := p.Enqueue(context.Background(), message("ana@example.com", "666666")); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Errorf("Enqueue after Close = %v, want EUNAVAILABLE", err)
	}
}

func TestPoolCloseDeadline(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithDelay(time.Minute))
	current, began := started()
	p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Current: current, Workers: 1}))
	runDone := runPool(t, p)
	for i := range 3 {
		if err := p.Enqueue(context.Background(), message("ana@example.com", code(i))); err != nil {
			t.Fatal(err)
		}
	}
	<-began

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v past its 100ms deadline", d)
	}
	<-runDone
	if st := p.Stats(); st.Sent != 0 || st.FailedTemporary != 1 {
		t.Errorf("Stats = %+v, want the in-flight send abandoned", st)
	}
}

// countSender counts messages; it stands in where the test is about the
// queue, not delivery.
type countSender struct {
	mu sync.Mutex
	n  int
}

func (c *countSender) Send(context.Context, authd.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return nil
}

func TestPoolEnqueue(t *testing.T) {
	sender := &countSender{}
	p := mailer.NewPool(sender, quietOptions(mailer.PoolOptions{QueueSize: 1}))
	ctx := context.Background()
	if err := p.Enqueue(ctx, message("ana@example.com", "111111")); err != nil {
		t.Fatal(err)
	}

	// Full: Enqueue waits until its ctx ends.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := p.Enqueue(short, message("ana@example.com", "222222")); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Errorf("Enqueue on a full queue = %v, want EUNAVAILABLE", err)
	}

	// A blocked Enqueue is woken by Close.
	blocked := make(chan error)
	go func() { blocked <- p.Enqueue(ctx, message("ana@example.com", "333333")) }()
	closeDone := make(chan error)
	go func() { closeDone <- p.Close(ctx) }()
	if err := <-blocked; authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Errorf("blocked Enqueue at Close = %v, want EUNAVAILABLE", err)
	}
	if err := <-closeDone; err != nil {
		t.Errorf("Close of a pool that never ran = %v", err)
	}
	// Close drained what had been accepted, though Run never started.
	if sender.n != 1 || p.Stats().Sent != 1 {
		t.Errorf("Close delivered %d messages, want 1", sender.n)
	}
	if err := p.Enqueue(ctx, message("ana@example.com", "444444")); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Errorf("Enqueue after Close = %v, want EUNAVAILABLE", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestPoolRunTwice(t *testing.T) {
	p := mailer.NewPool(&countSender{}, quietOptions(mailer.PoolOptions{}))
	first := make(chan error, 1)
	go func() { first <- p.Run(context.Background()) }()
	closePool(t, p) // Run or Close starts the workers, whichever comes first
	if err := <-first; err != nil {
		t.Errorf("first Run = %v", err)
	}
	if err := p.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// BenchmarkPoolDelivery measures delivery through 16 workers and kept
// connections into smtptest on loopback (an instant sink, parsing each
// message): the ceiling of the pool and the SMTP client, not of a real
// relay.
func BenchmarkPoolDelivery(b *testing.B) {
	srv := smtptest.Start(b)
	p := mailer.NewPool(newSender(b, srv, nil), quietOptions(mailer.PoolOptions{Workers: 16, QueueSize: 10000}))
	runPool(b, p)
	ctx := context.Background()
	msgs := make([]authd.Message, b.N)
	for i := range msgs {
		msgs[i] = message(fmt.Sprintf("user%d@example.com", i), code(i%1000000))
	}
	b.ResetTimer()
	start := time.Now()
	for _, m := range msgs {
		if err := p.Enqueue(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	srv.Wait(b, b.N, 5*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(srv.Connections()), "conns")
}

// Within the resend cooldown no newer code can exist: the pool skips the
// store's check; after it, it asks.
func TestPoolChecksCurrentOnlyAfterReplaceableAt(t *testing.T) {
	srv := smtptest.Start(t)
	var asked sync.Map
	current := func(_ context.Context, m authd.Message) (bool, error) {
		asked.Store(m.Code, true)
		return true, nil
	}
	p := mailer.NewPool(newSender(t, srv, nil), quietOptions(mailer.PoolOptions{Current: current}))
	runPool(t, p)
	fresh := message("ana@example.com", "111111")
	fresh.ReplaceableAt = time.Now().Add(time.Minute)
	old := message("bob@example.com", "222222")
	old.ReplaceableAt = time.Now().Add(-time.Second)
	for _, m := range []authd.Message{fresh, old} {
		if err := p.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	closePool(t, p)
	if _, ok := asked.Load("111111"); ok {
		t.Error("checked a code still inside its cooldown")
	}
	if _, ok := asked.Load("222222"); !ok {
		t.Error("did not check a code past its cooldown")
	}
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}
