// Package inmem implements authd's stores in memory, for the embedded
// default (DESIGN.md §3): one process, nothing kept across a restart.
//
// The CodeStore follows internal/redis's Lua scripts rule for rule, so
// that the two can be read side by side: each function here is the
// lib.lua function of the same name (gcraCheck is gcra_check, issueStore
// is issue_store, ...), each method the script it implements (IssueCode is
// issue.lua, Claim is claim.lua, ...), with the same checks in the same
// order. What differs is storage only: maps under one mutex for keys,
// time.Time for microseconds, no partitions (one process has no hash
// slots to keep together), and a sweep of expired entries for TTLs.
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

// CodeStore is the in-memory authd.CodeStore. The zero value is not
// usable; call NewCodeStore.
type CodeStore struct {
	mu    sync.Mutex
	codes map[codeKey]authd.CodeRecord // Redis: P{a:B}:code:<project>:<address>
	cool  map[codeKey]time.Time        // P{a:B}:cool:<project>:<address>: end of the cooldown
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

// sweep does what the keys' TTLs do on Redis.
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

// emission is the interval between two events at r's sustained rate: the
// scripts' t.
func emission(r authd.Rate) time.Duration {
	return max(r.Period/time.Duration(r.N), 1)
}

// skew is skew: how far out of order callers' clocks may be. A request
// stamped up to skew earlier than one already counted is judged as if it
// came at the same time; never above half an interval, so a burst at one
// instant still gets exactly N.
func skew(t time.Duration) time.Duration { return min(250*time.Millisecond, t/2) }

// gcraCheck is gcra_check: whether one more event fits the limit of k at
// now. When it does it also returns the bucket's new theoretical arrival
// time, for gcraSet; when it does not, the wait until it would. It
// changes nothing: a refused request must count nowhere.
func (s *CodeStore) gcraCheck(k limitKey, now time.Time, r authd.Rate) (ok bool, tat time.Time, wait time.Duration) {
	if r.Off() {
		return true, time.Time{}, 0
	}
	t := emission(r)
	tat = now
	if v, found := s.tats[k]; found && v.After(now) {
		tat = v
	}
	next := tat.Add(t)
	if window := t * time.Duration(r.N); next.Sub(now) > window+skew(t) {
		return false, tat, next.Sub(now) - window
	}
	return true, next, 0
}

// gcraSet is gcra_set: it stores an accepted event.
func (s *CodeStore) gcraSet(k limitKey, r authd.Rate, tat time.Time) {
	if !r.Off() {
		s.tats[k] = tat
	}
}

// gcraState is gcra_state: what is left of a limit after an accepted
// event, and the time until the bucket is full again.
func gcraState(now time.Time, r authd.Rate, tat time.Time) authd.LimitState {
	if r.Off() {
		return authd.LimitState{}
	}
	t := emission(r)
	reset := tat.Sub(now)
	return authd.LimitState{
		Limit:     r.N,
		Remaining: max(0, int((t*time.Duration(r.N)-reset)/t)),
		Reset:     reset,
	}
}

// limit is one of the limits checked before the address's (the scripts'
// limit keys): the client IP's, the project's. The Redis store takes them
// first on a Redis Cluster; in one process they are always checked here.
type limit struct {
	key  limitKey
	name string
	rate authd.Rate
}

// limitsCheck is limits_check: each limit in order. It returns the new
// arrival times of those that let the request through, and when one
// refused, its name and the wait. It changes nothing.
func (s *CodeStore) limitsCheck(limits []limit, now time.Time) (tats []time.Time, refused string, wait time.Duration) {
	for _, l := range limits {
		ok, tat, wait := s.gcraCheck(l.key, now, l.rate)
		if !ok {
			return tats, l.name, wait
		}
		tats = append(tats, tat)
	}
	return tats, "", 0
}

// limitsSet is limits_set: it counts the request against each limit.
func (s *CodeStore) limitsSet(limits []limit, tats []time.Time) {
	for i, l := range limits {
		s.gcraSet(l.key, l.rate, tats[i])
	}
}

// limitsState is limits_state: the first limit's state after the request
// (the client IP's, for the RateLimit-* headers).
func limitsState(limits []limit, now time.Time, tats []time.Time) authd.LimitState {
	if len(limits) == 0 {
		return authd.LimitState{}
	}
	return gcraState(now, limits[0].rate, tats[0])
}

// limitsStates is limits_states: every limit's state after the request,
// in order.
func limitsStates(limits []limit, now time.Time, tats []time.Time) []authd.LimitState {
	out := make([]authd.LimitState, len(limits))
	for i, l := range limits {
		out[i] = gcraState(now, l.rate, tats[i])
	}
	return out
}

// refusal is refusal: the refusing limit, and when limits let the request
// through before one refused (tats holds theirs), the first one's state as
// it stands without this request, for the RateLimit-* headers.
func refusal(name string, wait time.Duration, limits []limit, now time.Time, tats []time.Time) (authd.LimitState, error) {
	err := authd.RateLimited(name, wait)
	if len(tats) == 0 {
		return authd.LimitState{}, err
	}
	r := limits[0].rate
	if r.Off() {
		return authd.LimitState{}, err
	}
	return gcraState(now, r, tats[0].Add(-emission(r))), err
}

// issueCheck is issue_check: the address's side of IssueCode, the resend
// cooldown of (project, address), then the codes per address (all
// projects). It returns the codes-per-address limit's new arrival time,
// or the name of the refusing limit and the wait. It changes nothing.
func (s *CodeStore) issueCheck(ck codeKey, sent limitKey, now time.Time, sentRate authd.Rate) (tat time.Time, refused string, wait time.Duration) {
	if end, found := s.cool[ck]; found && end.After(now) {
		return time.Time{}, "cooldown", end.Sub(now)
	}
	ok, tat, wait := s.gcraCheck(sent, now, sentRate)
	if !ok {
		return time.Time{}, "codes_per_address", wait
	}
	return tat, "", 0
}

// issueStore is issue_store: it stores the new code, replacing any other,
// starts the cooldown and counts the code against the address. It reports
// whether a live code was replaced.
func (s *CodeStore) issueStore(ck codeKey, sent limitKey, now time.Time, cooldown time.Duration, sentRate authd.Rate, sentTAT time.Time, rec authd.CodeRecord) (replaced bool) {
	old, found := s.codes[ck]
	replaced = found && old.ExpiresAt.After(now)
	// Every field is written: nothing of the old code survives.
	rec = cloneRecord(rec)
	rec.Attempts = 0
	s.codes[ck] = rec
	if cooldown > 0 {
		s.cool[ck] = now.Add(cooldown)
	}
	s.gcraSet(sent, sentRate, sentTAT)
	return replaced
}

// consumeAddress is consume_address: the address's side of ConsumeCode,
// the failure budget, then the comparison (constant-time, as equal_ct).
func (s *CodeStore) consumeAddress(fail limitKey, ck codeKey, now time.Time, failRate authd.Rate, hash []byte, maxAtt int) (authd.CodeRecord, error) {
	ok, failTAT, wait := s.gcraCheck(fail, now, failRate)
	if !ok {
		return authd.CodeRecord{}, authd.RateLimited("failures_per_address", wait)
	}
	rec, found := s.codes[ck]
	if !found || !rec.ExpiresAt.After(now) {
		// Missing, used, dead or expired: not a try against a live code,
		// so it costs the address nothing.
		return authd.CodeRecord{}, authd.CodeRefused(authd.CodeExpired)
	}
	if maxAtt > 0 && rec.Attempts >= maxAtt {
		// Dead under a lower limit than the one it was tried under.
		delete(s.codes, ck)
		return authd.CodeRecord{}, authd.CodeRefused(authd.CodeBurnt)
	}
	if subtle.ConstantTimeCompare(rec.Hash, hash) == 1 {
		delete(s.codes, ck)
		return cloneRecord(rec), nil
	}
	rec.Attempts++
	reason := authd.CodeWrong
	if maxAtt > 0 && rec.Attempts >= maxAtt {
		delete(s.codes, ck)
		reason = authd.CodeBurnt
	} else {
		s.codes[ck] = rec
	}
	s.gcraSet(fail, failRate, failTAT)
	return authd.CodeRecord{}, authd.CodeRefused(reason)
}

// restoreCode is restore_code: it puts back a code record that was
// deleted, unless another record of (project, address) is there now (it
// was issued later, so it wins) or the code has expired.
func (s *CodeStore) restoreCode(ck codeKey, now time.Time, rec authd.CodeRecord) bool {
	if _, found := s.codes[ck]; found || !rec.ExpiresAt.After(now) {
		return false
	}
	rec = cloneRecord(rec)
	rec.Attempts = max(rec.Attempts, 0)
	s.codes[ck] = rec
	return true
}

func cloneRecord(rec authd.CodeRecord) authd.CodeRecord {
	rec.Hash = slices.Clone(rec.Hash)
	return rec
}

// IssueCode implements authd.CodeStore: issue.lua.
func (s *CodeStore) IssueCode(ctx context.Context, req authd.IssueRequest) (authd.IssueResult, error) {
	now := req.Now
	limits := []limit{
		{limitKey{"send", req.ClientIP}, "send_per_ip", req.SendPerIP},
		{limitKey{"total", ""}, "mails_total", req.MailsTotal},
		{limitKey{"mails", req.MailsOf()}, "mails_per_project", req.MailsPerProject},
	}
	ck := codeKey{req.Address.Key, req.Project}
	sent := limitKey{"sent", req.Address.Mailbox}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(now)

	// Every check before any write: a refused request counts nowhere.
	tats, name, wait := s.limitsCheck(limits, now)
	if name != "" {
		ip, err := refusal(name, wait, limits, now, tats)
		return authd.IssueResult{IP: ip}, err
	}
	sentTAT, name, wait := s.issueCheck(ck, sent, now, req.CodesPerAddress)
	if name != "" {
		ip, err := refusal(name, wait, limits, now, tats)
		return authd.IssueResult{IP: ip}, err
	}

	s.limitsSet(limits, tats)
	replaced := s.issueStore(ck, sent, now, req.ResendCooldown, req.CodesPerAddress, sentTAT, req.Record)
	if req.Job != nil {
		s.enqueueJob(req.Job, now)
	}
	st := limitsStates(limits, now, tats)
	return authd.IssueResult{Replaced: replaced, IP: st[0], Mails: st[1]}, nil
}

// ConsumeCode implements authd.CodeStore: consume.lua. Besides the
// documented results, it reports the client-IP limit's state with
// ErrInvalidCode too, for the response headers.
func (s *CodeStore) ConsumeCode(ctx context.Context, req authd.ConsumeRequest) (authd.ConsumeResult, error) {
	now := req.Now
	limits := []limit{{limitKey{"verify", req.ClientIP}, "verify_per_ip", req.VerifyPerIP}}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(now)

	tats, name, wait := s.limitsCheck(limits, now)
	if name != "" {
		ip, err := refusal(name, wait, limits, now, tats)
		return authd.ConsumeResult{IP: ip}, err
	}
	// The IP pays for every try it is allowed, whatever the outcome.
	s.limitsSet(limits, tats)
	res := authd.ConsumeResult{IP: limitsState(limits, now, tats)}

	rec, err := s.consumeAddress(limitKey{"fail", req.Address.Mailbox}, codeKey{req.Address.Key, req.Project}, now,
		req.FailuresPerAddress, req.Hash, max(req.AttemptsPerCode, 0))
	res.Record = rec
	return res, err
}

// RestoreCode implements authd.CodeStore: restore.lua.
func (s *CodeStore) RestoreCode(ctx context.Context, address authd.Address, project string, rec authd.CodeRecord, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restoreCode(codeKey{address.Key, project}, now, rec)
	return nil
}

// IsCurrent implements authd.CodeStore.
func (s *CodeStore) IsCurrent(ctx context.Context, address authd.Address, project, id string, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isCurrent(address, project, id, now), nil
}

// isCurrent is IsCurrent under s.mu.
func (s *CodeStore) isCurrent(address authd.Address, project, id string, now time.Time) bool {
	rec, found := s.codes[codeKey{address.Key, project}]
	return found && rec.ID == id && now.Before(rec.ExpiresAt)
}

// Unlock implements authd.CodeStore.
func (s *CodeStore) Unlock(ctx context.Context, mailbox string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tats, limitKey{"fail", mailbox})
	delete(s.tats, limitKey{"sent", mailbox})
	return nil
}
