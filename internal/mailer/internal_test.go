package mailer

import (
	"strings"
	"testing"
	"time"
)

func TestHeaderText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Example Shop", "Example Shop"},
		{"  Shop\r\nBcc: x@example.com ", "Shop Bcc: x@example.com"},
		{"a\tb\x00c\u2028d", "a b c d"},
		{"Zoë’s Café", "Zoë’s Café"},
		{"\r\n", ""},
		{strings.Repeat("x", 300), strings.Repeat("x", maxHeaderRunes)},
	} {
		if got := headerText(tc.in); got != tc.want {
			t.Errorf("headerText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMinutes(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want int
	}{
		{300 * time.Second, 5},
		{359 * time.Second, 5}, // rounded down: never promise more than there is
		{90 * time.Second, 1},
		{time.Second, 1},
		{0, 1},
	} {
		if got := minutes(tc.ttl); got != tc.want {
			t.Errorf("minutes(%v) = %d, want %d", tc.ttl, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	got := redact("550 5.1.1 <ana@example.com>: no such user; code 123456", []string{"ana@example.com"}, "123456")
	if want := "550 5.1.1 <a***@example.com>: no such user; code [code]"; got != want {
		t.Errorf("redact = %q, want %q", got, want)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{40, 500 * time.Millisecond, time.Second},
	} {
		// The defaults: the first retry within 2 s, no wait over 30 s.
		if d := backoff(2*time.Second, 30*time.Second, 1); d > 2*time.Second {
			t.Fatalf("first retry after %v", d)
		}
		if d := backoff(2*time.Second, 30*time.Second, 50); d > 30*time.Second {
			t.Fatalf("retry after %v", d)
		}
		for range 100 {
			if d := backoff(100*time.Millisecond, time.Second, tc.attempt); d < tc.min || d > tc.max {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}
