// Package inmem implements authd's stores in memory, for the embedded
// default (DESIGN.md §3): one process, nothing kept across a restart.
package inmem

import (
	"context"
	"crypto/subtle"
	"slices"
	"sync"
	"time"

	"github.com/authd/authd"
)

// SweepInterval is how often (in the requests' time) the CodeStore drops
// expired entries on its own, so that memory stays bounded by the live
// codes and limits.
const SweepInterval = time.Minute

// CodeStore is the in-memory authd.CodeStore: the same semantics as the
// Redis one, under one mutex. The zero value is not usable; call
// NewCodeStore.
type CodeStore struct {
	mu    sync.Mutex
	codes map[codeKey]authd.CodeRecord
	cool  map[codeKey]time.Time // end of each resend cooldown
	// tats holds each GCRA limit's theoretical arrival time; a bucket
	// whose time has passed is full, the same as a missing one.
	tats      map[limitKey]time.Time
	lastSweep time.Time
	queue     memQueue // the mail jobs (queue.go)
}

var _ authd.CodeStore = (*CodeStore)(nil)

type codeKey struct{ address, project string }

type limitKey struct {
	kind string // "send", "verify", "mails", "sent", "fail"
	name string // client IP, project or address key
}

// NewCodeStore returns an empty CodeStore.
func NewCodeStore() *CodeStore {
	return &CodeStore{
		codes: make(map[codeKey]authd.CodeRecord),
		cool:  make(map[codeKey]time.Time),
		tats:  make(map[limitKey]time.Time),
	}
}

// Sweep drops every entry that has expired at now. The store calls it by
// itself every SweepInterval; it is exported for tests and for a caller
// that wants memory back sooner.
func (s *CodeStore) Sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
}

// Len returns how many codes, cooldowns and limit buckets the store holds,
// expired or not: what Sweep bounds.
func (s *CodeStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.codes) + len(s.cool) + len(s.tats)
}

func (s *CodeStore) sweep(now time.Time) {
	for k, rec := range s.codes {
		if !now.Before(rec.ExpiresAt) {
			delete(s.codes, k)
		}
	}
	for k, end := range s.cool {
		if !now.Before(end) {
			delete(s.cool, k)
		}
	}
	for k, tat := range s.tats {
		if !now.Before(tat) {
			delete(s.tats, k)
		}
	}
	s.sweepQueue(now)
	s.lastSweep = now
}

// maybeSweep sweeps when SweepInterval has passed since the last sweep:
// amortised, each entry is looked at once per interval. Called with mu
// held.
func (s *CodeStore) maybeSweep(now time.Time) {
	if now.Sub(s.lastSweep) >= SweepInterval {
		s.sweep(now)
	}
}

// check reports whether one more event fits limit r of k at now, returning
// the new theoretical arrival time to commit, or the wait until it fits.
// It changes nothing.
func (s *CodeStore) check(k limitKey, r authd.Rate, now time.Time) (ok bool, tat time.Time, wait time.Duration) {
	if r.Off() {
		return true, time.Time{}, 0
	}
	t := emission(r)
	tat = s.tats[k]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(t)
	window := t * time.Duration(r.N)
	if d := next.Sub(now); d > window {
		return false, tat, d - window
	}
	return true, next, 0
}

// commit stores an accepted event's theoretical arrival time.
func (s *CodeStore) commit(k limitKey, r authd.Rate, tat time.Time) {
	if !r.Off() {
		s.tats[k] = tat
	}
}

// emission is the interval between two events at r's sustained rate.
func emission(r authd.Rate) time.Duration {
	return max(r.Period/time.Duration(r.N), 1)
}

// state is the LimitState after an accepted event.
func state(r authd.Rate, tat, now time.Time) authd.LimitState {
	if r.Off() {
		return authd.LimitState{}
	}
	t := emission(r)
	reset := tat.Sub(now)
	return authd.LimitState{
		Limit:     r.N,
		Remaining: int((t*time.Duration(r.N) - reset) / t),
		Reset:     reset,
	}
}

// limited is the refusal of a limit; RetryAfter rounded up to whole seconds
// (as Retry-After counts them), at least one.

func cloneRecord(rec authd.CodeRecord) authd.CodeRecord {
	rec.Hash = slices.Clone(rec.Hash)
	return rec
}

// IssueCode implements authd.CodeStore.
func (s *CodeStore) IssueCode(ctx context.Context, req authd.IssueRequest) (authd.IssueResult, error) {
	now := req.Now
	ck := codeKey{req.Address, req.Project}
	ipK := limitKey{"send", req.ClientIP}
	pK := limitKey{"mails", req.Project}
	sentK := limitKey{"sent", req.Address}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(now)

	// Every check before any write: a refused request counts nowhere.
	ok, ipTAT, wait := s.check(ipK, req.SendPerIP, now)
	if !ok {
		return authd.IssueResult{}, authd.RateLimited("send_per_ip", wait)
	}
	// A refusal by a later limit still reports the client-IP limit, as it
	// stands without this request, for the RateLimit-* headers.
	var refused authd.IssueResult
	if !req.SendPerIP.Off() {
		refused.IP = state(req.SendPerIP, ipTAT.Add(-emission(req.SendPerIP)), now)
	}
	ok, pTAT, wait := s.check(pK, req.MailsPerProject, now)
	if !ok {
		return refused, authd.RateLimited("mails_per_project", wait)
	}
	if end, found := s.cool[ck]; found && end.After(now) {
		return refused, authd.RateLimited("cooldown", end.Sub(now))
	}
	ok, sentTAT, wait := s.check(sentK, req.CodesPerAddress, now)
	if !ok {
		return refused, authd.RateLimited("codes_per_address", wait)
	}

	s.commit(ipK, req.SendPerIP, ipTAT)
	s.commit(pK, req.MailsPerProject, pTAT)
	s.commit(sentK, req.CodesPerAddress, sentTAT)
	if req.ResendCooldown > 0 {
		s.cool[ck] = now.Add(req.ResendCooldown)
	}
	old, found := s.codes[ck]
	replaced := found && now.Before(old.ExpiresAt)
	rec := cloneRecord(req.Record)
	rec.Attempts = 0
	s.codes[ck] = rec
	if req.Job != nil {
		s.enqueue(req.Job, now)
	}
	return authd.IssueResult{Replaced: replaced, IP: state(req.SendPerIP, ipTAT, now)}, nil
}

// ConsumeCode implements authd.CodeStore. Besides the documented results,
// it reports the client-IP limit's state with ErrInvalidCode too, for the
// response headers.
func (s *CodeStore) ConsumeCode(ctx context.Context, req authd.ConsumeRequest) (authd.ConsumeResult, error) {
	now := req.Now
	ck := codeKey{req.Address, req.Project}
	ipK := limitKey{"verify", req.ClientIP}
	failK := limitKey{"fail", req.Address}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(now)

	ok, ipTAT, wait := s.check(ipK, req.VerifyPerIP, now)
	if !ok {
		return authd.ConsumeResult{}, authd.RateLimited("verify_per_ip", wait)
	}
	// The IP pays for every try it is allowed, whatever the outcome.
	s.commit(ipK, req.VerifyPerIP, ipTAT)
	res := authd.ConsumeResult{IP: state(req.VerifyPerIP, ipTAT, now)}

	ok, failTAT, wait := s.check(failK, req.FailuresPerAddress, now)
	if !ok {
		return res, authd.RateLimited("failures_per_address", wait)
	}
	rec, found := s.codes[ck]
	if !found || !now.Before(rec.ExpiresAt) {
		// Missing, used, dead or expired: not a try against a live code,
		// so it costs the address nothing.
		return res, authd.CodeRefused(authd.CodeExpired)
	}
	if req.AttemptsPerCode > 0 && rec.Attempts >= req.AttemptsPerCode {
		// Dead under a lower limit than the one it was tried under.
		delete(s.codes, ck)
		return res, authd.CodeRefused(authd.CodeBurnt)
	}
	if subtle.ConstantTimeCompare(rec.Hash, req.Hash) == 1 {
		delete(s.codes, ck)
		res.Record = cloneRecord(rec)
		return res, nil
	}
	rec.Attempts++
	reason := authd.CodeWrong
	if req.AttemptsPerCode > 0 && rec.Attempts >= req.AttemptsPerCode {
		delete(s.codes, ck)
		reason = authd.CodeBurnt
	} else {
		s.codes[ck] = rec
	}
	s.commit(failK, req.FailuresPerAddress, failTAT)
	return res, authd.CodeRefused(reason)
}

// RestoreCode implements authd.CodeStore. Any record of (project, address)
// present now was issued after the consumed one, which was deleted: it
// wins.
func (s *CodeStore) RestoreCode(ctx context.Context, address, project string, rec authd.CodeRecord, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ck := codeKey{address, project}
	if _, found := s.codes[ck]; found || !now.Before(rec.ExpiresAt) {
		return nil
	}
	rec = cloneRecord(rec)
	rec.Attempts = max(rec.Attempts, 0)
	s.codes[ck] = rec
	return nil
}

// IsCurrent implements authd.CodeStore.
func (s *CodeStore) IsCurrent(ctx context.Context, address, project, id string, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, found := s.codes[codeKey{address, project}]
	return found && rec.ID == id && now.Before(rec.ExpiresAt), nil
}

// Unlock implements authd.CodeStore.
func (s *CodeStore) Unlock(ctx context.Context, address string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tats, limitKey{"fail", address})
	delete(s.tats, limitKey{"sent", address})
	return nil
}
