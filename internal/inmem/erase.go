package inmem

import "context"

// EraseAddress deletes everything kept about an address key, as
// internal/redis's EraseAddress does: its live codes and resend cooldowns
// in every project, its send and failure budgets, and its queued mail
// jobs with their claims and delivery statuses (erasure on request: a
// mail queued before it is not sent after it). It reports how many codes,
// cooldowns and budgets it deleted (the Redis store's count of keys; jobs
// are not counted).
//
// It never fails; the error is for the Redis store's signature.
func (s *CodeStore) EraseAddress(ctx context.Context, address string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
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
		if _, ok := s.tats[limitKey{kind, address}]; ok {
			delete(s.tats, limitKey{kind, address})
			n++
		}
	}
	s.eraseJobs(address)
	return n, nil
}
