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
		// Cut where a space stood: no trailing space (a folded header
		// line must not end up all white space).
		{strings.Repeat("x", maxHeaderRunes-1) + " ?= y", strings.Repeat("x", maxHeaderRunes-1)},
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
