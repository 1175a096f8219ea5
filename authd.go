// Package authd is the domain of the authd service: the types, the small
// interfaces the send/verify flow needs from its backends, its errors, and the
// flow itself (service.go). It imports no driver; each backend lives in a
// package under internal/ named after what it wraps.
package authd

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a limit of N events per Period with a burst of N (GCRA). A zero N
// turns the limit off.
type Rate struct {
	N      int
	Period time.Duration
}

// Off reports whether the limit is switched off.
func (r Rate) Off() bool { return r.N <= 0 || r.Period <= 0 }

func (r Rate) String() string {
	if r.Off() {
		return "0"
	}
	switch r.Period {
	case time.Second:
		return fmt.Sprintf("%d/s", r.N)
	case time.Minute:
		return fmt.Sprintf("%d/m", r.N)
	case time.Hour:
		return fmt.Sprintf("%d/h", r.N)
	}
	return fmt.Sprintf("%d/%s", r.N, r.Period)
}

// ParseRate reads "N/s", "N/m", "N/h" (also "N/d") or "0".
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return Rate{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("want N/s, N/m, N/h or 0, got %q", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 0 {
		return Rate{}, fmt.Errorf("want a non-negative count before '/', got %q", s)
	}
	var p time.Duration
	switch strings.TrimSpace(unit) {
	case "s", "sec", "second":
		p = time.Second
	case "m", "min", "minute":
		p = time.Minute
	case "h", "hour":
		p = time.Hour
	case "d", "day":
		p = 24 * time.Hour
	default:
		return Rate{}, fmt.Errorf("want a period of s, m or h, got %q", s)
	}
	if count == 0 {
		return Rate{}, nil
	}
	return Rate{N: count, Period: p}, nil
}

// Policy is the security policy of DESIGN.md §2. Every number is set by
// configuration; its defaults are internal/config's table's
// (config.DefaultPolicy).
type Policy struct {
	CodeTTL            time.Duration // OTP_EXPIRE_SECONDS
	AttemptsPerCode    int           // OTP_ATTEMPTS_LIMIT
	ResendCooldown     time.Duration // OTP_RESEND_SECONDS
	CodesPerAddress    Rate          // LIMIT_CODES_PER_ADDRESS, per mailbox, all projects together
	FailuresPerAddress Rate          // LIMIT_FAILURES_PER_ADDRESS, per mailbox, all projects, across codes
	SendPerIP          Rate          // LIMIT_SEND_CODE_PER_IP
	VerifyPerIP        Rate          // LIMIT_VERIFY_CODE_PER_IP
	MailsTotal         Rate          // LIMIT_MAILS_TOTAL, all projects, all addresses, all instances
	MailsPerProject    Rate          // LIMIT_MAILS_PER_PROJECT
}
