package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// health is the signal behind Worker.Degraded: whether deliveries fail at
// the session level (authd.SendError.Session), temporarily or for good.
//
// The threshold is `after` (DegradedAfter, 5) session failures in a row,
// counting every attempt, retries included; only a delivery sent clears
// them. Why in a row rather than most of a window (the last 20, say):
//   - authd sends few mails; a window needs 11 failures of 20 before it
//     says anything, which for a STARTTLS mismatch (each mail refused once,
//     for good) can be hours of users without their codes, where 5 in a
//     row is the fifth user.
//   - in an outage a single mail's own retries (2 s, 4 s, 8 s, 16 s
//     apart by default) reach 5 within half a minute.
//   - a flapping server that still delivers some mail keeps clearing the
//     streak: mail is late, not gone, and readiness need not say so.
//
// A recipient's own refusal (RCPT TO, 4xx or 5xx: !Session) neither counts
// nor clears: it says nothing of the session, anyone can ask codes for
// made-up addresses, and if it cleared the streak such requests would hide
// a real failure at DATA.
type health struct {
	after int
	log   *slog.Logger

	degraded atomic.Bool // read without the lock: every readiness probe and scrape

	mu      sync.Mutex
	streak  int    // session failures since the last delivery sent
	setting string // the variables named by the failure that made it degraded
}

// failed records a session failure; cause is its text, already redacted.
// The failure that makes the worker degraded logs one ERROR line naming
// the cause and the setting to check; the next ones, none.
func (h *health) failed(cause, setting string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streak++
	if h.degraded.Load() || h.streak < h.after {
		return
	}
	h.degraded.Store(true)
	h.setting = setting
	msg := "mail delivery failing: " + cause
	if setting != "" {
		msg += "; check " + setting
	}
	// Under the lock: the recovery's INFO line cannot come before it.
	h.log.Error(msg, slog.Int("failures_in_a_row", h.streak), slog.String("setting", setting))
}

// succeeded records a delivery sent: the streak ends, and a degraded
// worker logs one INFO line as it recovers.
func (h *health) succeeded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.degraded.Load() {
		h.log.Info("mail delivery works again", slog.Int("failures_before", h.streak))
		h.degraded.Store(false)
	}
	h.streak, h.setting = 0, ""
}

// check is Worker.Check: an error while degraded. Its text goes to the
// readiness log (not to the answer); it holds no address and no code.
func (h *health) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.degraded.Load() {
		return nil
	}
	msg := fmt.Sprintf("mail delivery failing: %d deliveries in a row failed at the session level", h.streak)
	if h.setting != "" {
		msg += "; check " + h.setting
	}
	return errors.New(msg)
}
