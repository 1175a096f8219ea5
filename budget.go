package authd

import (
	"log/slog"
	"sync"
	"time"
)

// mailBudget follows the limit of mails in total (LIMIT_MAILS_TOTAL) as
// the sends of this instance see it, to tell the operator before it runs
// out: the limit is a circuit breaker for the sender's reputation, shared
// by every instance, and when it is spent nobody can sign in.
type mailBudget struct {
	mu                sync.Mutex
	last              LimitState // after the last send seen; Limit 0: none yet, or off
	at                time.Time  // when
	warned80, warned0 time.Time  // the last WARN lines of each kind
}

// budgetWarnEvery bounds the budget's WARN lines: at most one a minute of
// each kind (80 % spent, spent).
const budgetWarnEvery = time.Minute

// sent records the budget after an accepted send, and warns when more
// than 80 % of it is spent.
func (s *Service) budgetSent(st LimitState, now time.Time) {
	if st.Limit <= 0 {
		return
	}
	b := &s.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.at = st, now
	if st.Remaining*5 < st.Limit && now.Sub(b.warned80) >= budgetWarnEvery {
		b.warned80 = now
		s.logger().Warn("mail budget more than 80% spent: when it is, send-code answers 429 for everyone",
			slog.String("limit", "LIMIT_MAILS_TOTAL="+s.Policy.MailsTotal.String()),
			slog.Int("remaining", st.Remaining), slog.Duration("full_again_in", st.Reset))
	}
}

// budgetSpent warns that a send was refused because the budget is spent.
func (s *Service) budgetSpent(retryAfter time.Duration, now time.Time) {
	b := &s.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.at = LimitState{Limit: s.Policy.MailsTotal.N, Remaining: 0, Reset: retryAfter}, now
	if now.Sub(b.warned0) >= budgetWarnEvery {
		b.warned0 = now
		s.logger().Warn("mail budget spent: send-code answers 429 to everyone until it refills",
			slog.String("limit", "LIMIT_MAILS_TOTAL="+s.Policy.MailsTotal.String()), slog.Duration("retry_after", retryAfter))
	}
}

// MailBudget returns what is left of the limit of mails in total, and its
// size (0 when it is off): as this instance last saw it, refilled since at
// the limit's rate (another instance's sends since are not seen until this
// one sends).
func (s *Service) MailBudget() (remaining, limit int) {
	r := s.Policy.MailsTotal
	if r.Off() {
		return 0, 0
	}
	b := &s.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.Limit == 0 {
		return r.N, r.N
	}
	refilled := int(s.now().Sub(b.at) / max(r.Period/time.Duration(r.N), 1))
	return min(b.last.Remaining+refilled, r.N), r.N
}
