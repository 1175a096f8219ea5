package inmem

import (
	"context"

	"github.com/authd/authd"
)

// EraseAddress deletes everything kept about an address, as
// internal/redis's EraseAddress does: its live codes and resend cooldowns
// in every project, its mailbox's send and failure budgets, and its queued mail
// jobs with their claims and delivery statuses (erasure on request: a
// mail queued before it is not sent after it). It reports how many codes,
// cooldowns and budgets it deleted (the Redis store's count of keys; jobs
// are not counted).
//
// It never fails; the error is for the Redis store's signature.
func (s *CodeStore) EraseAddress(ctx context.Context, a authd.Address) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	address, n := a.Key, 0
	for k := range s.codes {
		if k.address == address {
			delete(s.codes, k)
			n++
		}
	}
	for k := range s.cool {
		if k.address == address {
			delete(s.cool, k)
			n++
		}
	}
	for _, kind := range []string{"sent", "fail"} {
		if _, ok := s.tats[limitKey{kind, a.Mailbox}]; ok {
			delete(s.tats, limitKey{kind, a.Mailbox})
			n++
		}
	}
	s.eraseJobs(address)
	return n, nil
}
