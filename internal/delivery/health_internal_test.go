package delivery

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestHealth: degraded at exactly `after` session failures in a row, one
// ERROR line however long it lasts, one INFO line when a delivery clears
// it, and the count starting over after.
func TestHealth(t *testing.T) {
	var buf bytes.Buffer
	h := &health{after: 3, log: slog.New(slog.NewTextHandler(&buf, nil))}
	count := func(s string) int { return strings.Count(buf.String(), s) }

	h.failed("smtp: connect: connection refused", "SMTP_HOST, SMTP_PORT")
	h.failed("smtp: connect: connection refused", "SMTP_HOST, SMTP_PORT")
	if h.degraded.Load() || h.check() != nil {
		t.Fatal("degraded after 2 of 3")
	}
	h.succeeded() // the streak starts over
	for range 2 {
		h.failed("smtp: STARTTLS: not offered", "SMTP_TLS")
	}
	if h.degraded.Load() {
		t.Fatal("degraded after a success and 2 failures")
	}
	h.failed("smtp: STARTTLS: not offered", "SMTP_TLS")
	if !h.degraded.Load() {
		t.Fatal("not degraded after 3 in a row")
	}
	for range 10 {
		h.failed("smtp: DATA: 554", "")
	}
	if n := count("level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `msg="mail delivery failing: smtp: STARTTLS: not offered; check SMTP_TLS" failures_in_a_row=3 setting=SMTP_TLS`) {
		t.Errorf("the ERROR line:\n%s", buf.String())
	}
	// Readiness names the setting of the failure that made it degraded.
	if err := h.check(); err == nil || !strings.Contains(err.Error(), "13 deliveries in a row") || !strings.HasSuffix(err.Error(), "; check SMTP_TLS") {
		t.Errorf("check = %v", err)
	}

	h.succeeded()
	h.succeeded()
	if h.degraded.Load() || h.check() != nil {
		t.Fatal("still degraded after a success")
	}
	if n := count(`level=INFO msg="mail delivery works again" failures_before=13`); n != 1 || count("level=INFO") != 1 {
		t.Fatalf("recovery lines:\n%s", buf.String())
	}

	// A second episode is told again, once.
	for range 3 {
		h.failed("smtp: AUTH: 535", "SMTP_USER, SMTP_PASSWORD")
	}
	if n := count("level=ERROR"); n != 2 || !strings.Contains(buf.String(), "; check SMTP_USER, SMTP_PASSWORD") {
		t.Fatalf("second episode:\n%s", buf.String())
	}
	if err := h.check(); err == nil || !strings.HasSuffix(err.Error(), "; check SMTP_USER, SMTP_PASSWORD") {
		t.Errorf("check = %v", err)
	}
}
