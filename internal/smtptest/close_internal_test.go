package smtptest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdServe returns an option that keeps the Serve goroutine from starting
// Serve until release is closed: the order a loaded machine can produce.
func holdServe(release <-chan struct{}) Option {
	return func(c *config) { c.beforeServe = func() { <-release } }
}

// TestCloseBeforeServe closes the server before its Serve goroutine has run,
// for a plain and a TLS-wrapped listener. go-smtp's Close then has no
// listener to close; Close must still stop the server rather than leave
// Serve blocked in Accept and itself waiting forever.
func TestCloseBeforeServe(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"implicit TLS", []Option{WithImplicitTLS()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			s := Start(t, append(tc.opts, holdServe(release))...)
			s.shutdown()
			close(release)
			s.Close()
			select {
			case <-s.done:
			default:
				t.Fatal("Close returned before Serve did")
			}
			if c, err := net.Dial("tcp", s.Addr()); err == nil {
				c.Close()
				t.Fatal("dial after Close succeeded")
			}
		})
	}
}

// recordTB records Errorf instead of failing the test.
type recordTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// TestCloseDoesNotHang holds Serve back past Close's timeout: Close must
// return and report the stuck server, with the goroutine dump that shows
// where, instead of hanging the test binary.
func TestCloseDoesNotHang(t *testing.T) {
	rec := &recordTB{TB: t}
	release := make(chan struct{})
	s := Start(rec, holdServe(release), func(c *config) { c.closeTimeout = 50 * time.Millisecond })

	s.Close()
	errs := rec.errors()
	if len(errs) != 1 || !strings.Contains(errs[0], "still serving") || !strings.Contains(errs[0], "goroutine ") {
		t.Fatalf("Close with a stuck Serve reported %q, want one error with a goroutine dump", errs)
	}

	// Once Serve runs it finds its listener closed and returns.
	close(release)
	s.cfg.closeTimeout = defaultCloseTimeout
	s.Close()
	if errs := rec.errors(); len(errs) != 1 {
		t.Fatalf("second Close reported %d errors, want none new", len(errs)-1)
	}
}
