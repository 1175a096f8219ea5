package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/authd/authd"
)

// IssueCode implements authd.CodeStore. One round trip, in split mode too
// (split.go), where a refusal costs a second one.
func (s *Store) IssueCode(ctx context.Context, req authd.IssueRequest) (authd.IssueResult, error) {
	if s.split {
		return s.issueSplit(ctx, req)
	}
	now := req.Now.UnixMicro()
	ipT, ipN := rateArgs(req.SendPerIP)
	pT, pN := rateArgs(req.MailsPerProject)
	sentT, sentN := rateArgs(req.CodesPerAddress)
	cool := max(req.ResendCooldown.Microseconds(), 0)
	ipKey := s.ipKey(req.ClientIP, "send")
	pKey := s.projectKey(req.Project)
	k := s.keysOf(req.Address, req.Project)
	rec := req.Record
	exp := rec.ExpiresAt.UnixMicro()

	keys := []string{ipKey, pKey, k.code, k.cool, k.sent}
	args := []any{now, ipT, ipN, pT, pN, cool, sentT, sentN, rec.ID, rec.Hash, exp}
	if j := req.Job; j != nil {
		keys = append(keys, k.mail, s.statusKey(j.DeliveryID))
		args = append(args, jobArgs(j)...)
	}
	r, err := s.runAll(ctx, []scriptCall{{issueScript, keys, args}})
	if err != nil {
		return authd.IssueResult{}, err
	}
	v, err := parseIssue(r[0], 3)
	if err != nil {
		var res authd.IssueResult
		if ip, ok := refusalIPState(r[0]); ok {
			res.IP = limitState(req.SendPerIP, ip[0], ip[1])
		}
		return res, err
	}
	return authd.IssueResult{Replaced: v[0] == 1, IP: limitState(req.SendPerIP, v[1], v[2])}, nil
}

// parseIssue reads {'limit', name, wait} as a refusal, or {'ok', n ints}.
func parseIssue(reply any, n int) ([]int64, error) {
	a, ok := reply.([]any)
	if !ok || len(a) == 0 {
		return nil, badReply(reply)
	}
	if isLimit, err := parseLimit(a); isLimit {
		return nil, err
	}
	return ints(a[1:], n)
}

// parseLimit reads a {'limit', name, wait} reply: isLimit reports whether
// a is one, err is the refusal.
func parseLimit(a []any) (isLimit bool, err error) {
	if kind, _ := a[0].(string); kind != "limit" {
		return false, nil
	}
	if len(a) != 3 && len(a) != 5 {
		return true, badReply(a)
	}
	name, ok1 := a[1].(string)
	wait, ok2 := a[2].(int64)
	if !ok1 || !ok2 {
		return true, badReply(a)
	}
	return true, limited(name, wait)
}

// refusalIPState reads the client-IP limit's state that a refusal by a
// later limit carries: {'limit', name, wait, remaining, reset}.
func refusalIPState(reply any) ([]int64, bool) {
	a, ok := reply.([]any)
	if !ok || len(a) != 5 {
		return nil, false
	}
	v, err := ints(a[3:], 2)
	return v, err == nil
}

// ints reads exactly n integers.
func ints(a []any, n int) ([]int64, error) {
	if len(a) != n {
		return nil, badReply(a)
	}
	out := make([]int64, n)
	for i, v := range a {
		x, ok := v.(int64)
		if !ok {
			return nil, badReply(a)
		}
		out[i] = x
	}
	return out, nil
}

// limitState is the LimitState of an accepted request under r.
func limitState(r authd.Rate, remaining, resetMicros int64) authd.LimitState {
	if r.Off() {
		return authd.LimitState{}
	}
	return authd.LimitState{
		Limit:     r.N,
		Remaining: int(remaining),
		Reset:     time.Duration(resetMicros) * time.Microsecond,
	}
}

// ConsumeCode implements authd.CodeStore. One round trip, in split mode
// too (split.go), where a try refused for its IP costs a second one.
// Besides the documented results, it reports the client-IP limit's
// state with ErrInvalidCode too, for the response headers.
func (s *Store) ConsumeCode(ctx context.Context, req authd.ConsumeRequest) (authd.ConsumeResult, error) {
	now := req.Now.UnixMicro()
	ipT, ipN := rateArgs(req.VerifyPerIP)
	failT, failN := rateArgs(req.FailuresPerAddress)
	ipKey := s.ipKey(req.ClientIP, "verify")
	k := s.keysOf(req.Address, req.Project)
	maxAtt := max(req.AttemptsPerCode, 0)

	var reply []any
	var ip [2]int64
	if !s.split {
		r, err := s.runAll(ctx, []scriptCall{{consumeScript,
			[]string{ipKey, k.fail, k.code},
			[]any{now, ipT, ipN, failT, failN, req.Hash, maxAtt}}})
		if err != nil {
			return authd.ConsumeResult{}, err
		}
		a := asSlice(r[0])
		if len(a) == 0 {
			return authd.ConsumeResult{}, badReply(r[0])
		}
		if isLimit, err := parseLimit(a); isLimit {
			return authd.ConsumeResult{}, err
		}
		if len(a) < 3 {
			return authd.ConsumeResult{}, badReply(r[0])
		}
		v, err := ints(a[:2], 2)
		if err != nil {
			return authd.ConsumeResult{}, err
		}
		ip, reply = [2]int64{v[0], v[1]}, a[2:]
	} else {
		var err error
		ip, reply, err = s.consumeSplit(ctx, req)
		if err != nil {
			return authd.ConsumeResult{}, err
		}
	}
	res := authd.ConsumeResult{IP: limitState(req.VerifyPerIP, ip[0], ip[1])}
	rec, err := parseConsume(reply)
	if err != nil {
		return res, err
	}
	res.Record = rec
	return res, nil
}

// parseConsume reads consume_address's reply (lib.lua).
func parseConsume(a []any) (authd.CodeRecord, error) {
	if len(a) == 0 {
		return authd.CodeRecord{}, badReply(a)
	}
	if isLimit, err := parseLimit(a); isLimit {
		return authd.CodeRecord{}, err
	}
	switch kind, _ := a[0].(string); kind {
	case "invalid":
		// The reason (expired, burnt, wrong) is for metrics; the answer
		// is the one 401 whatever it is.
		reason, _ := a[len(a)-1].(string)
		if len(a) < 2 {
			reason = ""
		}
		return authd.CodeRecord{}, authd.CodeRefused(reason)
	case "ok":
		if len(a) != 5 {
			return authd.CodeRecord{}, badReply(a)
		}
		id, ok1 := a[1].(string)
		hash, ok2 := a[2].(string)
		v, err := ints(a[3:], 2)
		if !ok1 || !ok2 || err != nil {
			return authd.CodeRecord{}, badReply(a)
		}
		return authd.CodeRecord{
			ID:        id,
			Hash:      []byte(hash),
			ExpiresAt: time.UnixMicro(v[0]).UTC(),
			Attempts:  int(v[1]),
		}, nil
	}
	return authd.CodeRecord{}, badReply(a)
}

// RestoreCode implements authd.CodeStore.
func (s *Store) RestoreCode(ctx context.Context, address, project string, rec authd.CodeRecord, now time.Time) error {
	_, err := s.runAll(ctx, []scriptCall{{restoreScript,
		[]string{s.keysOf(address, project).code},
		[]any{now.UnixMicro(), rec.ID, rec.Hash, rec.ExpiresAt.UnixMicro(), max(rec.Attempts, 0)}}})
	return err
}

// IsCurrent implements authd.CodeStore.
func (s *Store) IsCurrent(ctx context.Context, address, project, id string, now time.Time) (bool, error) {
	v, err := s.client.HMGet(ctx, s.keysOf(address, project).code, "id", "exp").Result()
	if err != nil {
		return false, unavailable(err)
	}
	gotID, _ := v[0].(string)
	exp, _ := v[1].(string)
	if gotID == "" || gotID != id {
		return false, nil
	}
	expMicros, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return false, badReply(v)
	}
	return now.UnixMicro() < expMicros, nil
}

// Unlock implements authd.CodeStore.
func (s *Store) Unlock(ctx context.Context, address string) error {
	// Both keys share the address's slot: one DEL even on a cluster.
	k := s.keysOf(address, "")
	if err := s.client.Del(ctx, k.fail, k.sent).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}
