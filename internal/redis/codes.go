package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/authd/authd"
)

// IssueCode implements authd.CodeStore. One round trip; two in split mode.
func (s *Store) IssueCode(ctx context.Context, req authd.IssueRequest) (authd.IssueResult, error) {
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

	if !s.split {
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

	// Split mode. First the client-IP and project limits, each in its own
	// slot, in one pipeline; what they took is given back if a later check
	// refuses.
	var takes []take
	if ipT > 0 {
		takes = append(takes, take{key: ipKey, t: ipT, n: ipN, limit: "send_per_ip"})
	}
	if pT > 0 {
		takes = append(takes, take{key: pKey, t: pT, n: pN, limit: "mails_per_project"})
	}
	// ipState is the first take's, which is the IP's when its limit is on
	// (and ignored when it is off).
	taken, ipState, err := s.take(ctx, now, takes)
	if err != nil {
		return authd.IssueResult{}, err
	}
	calls := []scriptCall{{issueAddressScript,
		[]string{k.code, k.cool, k.sent},
		[]any{now, cool, sentT, sentN, rec.ID, rec.Hash, exp}}}
	if j := req.Job; j != nil {
		// The status lives in its own slot: written in the same pipeline
		// (one round trip), taken back below if the address refuses.
		calls[0].keys = append(calls[0].keys, k.mail)
		calls[0].args = append(calls[0].args, jobArgs(j)...)
		calls = append(calls, scriptCall{statusInitScript, []string{s.statusKey(j.DeliveryID)}, []any{now, exp}})
	}
	r, err := s.runAll(ctx, calls)
	if err != nil {
		// The script may have run: keep the tokens, erring on the strict
		// side.
		return authd.IssueResult{}, err
	}
	v, err := parseIssue(r[0], 1)
	if err != nil {
		if authd.ErrorCode(err) == authd.ERATELIMITED {
			s.refund(ctx, now, taken)
			if j := req.Job; j != nil {
				_ = s.client.Del(context.WithoutCancel(ctx), s.statusKey(j.DeliveryID)).Err()
			}
		}
		return authd.IssueResult{}, err
	}
	return authd.IssueResult{Replaced: v[0] == 1, IP: limitState(req.SendPerIP, ipState[0], ipState[1])}, nil
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

// take is one GCRA limit counted on its own (split mode).
type take struct {
	key   string
	t, n  int64
	limit string
}

// take counts one event against each limit, in one pipeline. If one
// refuses, or a call fails, the others are given back. It returns what it
// took, and the remaining and reset of the first limit.
func (s *Store) take(ctx context.Context, now int64, takes []take) ([]take, [2]int64, error) {
	var first [2]int64
	if len(takes) == 0 {
		return nil, first, nil
	}
	calls := make([]scriptCall, len(takes))
	for i, tk := range takes {
		calls[i] = scriptCall{takeScript, []string{tk.key}, []any{now, tk.t, tk.n}}
	}
	replies, err := s.runAll(ctx, calls)
	var taken []take
	var refusal error
	for i, r := range replies {
		if r == nil {
			continue // failed: err says so
		}
		v, perr := ints(asSlice(r), 3)
		switch {
		case perr != nil:
			if err == nil {
				err = perr
			}
		case v[0] == 1:
			taken = append(taken, takes[i])
			if i == 0 {
				first = [2]int64{v[1], v[2]}
			}
		case refusal == nil:
			// The earliest limit in check order is the one reported.
			refusal = limited(takes[i].limit, v[1])
		}
	}
	if err == nil {
		err = refusal
	}
	if err != nil {
		s.refund(ctx, now, taken)
		return nil, first, err
	}
	return taken, first, nil
}

func asSlice(v any) []any {
	a, _ := v.([]any)
	return a
}

// refund gives back the events of taken. Best effort: if Redis is down the
// tokens stay taken until their buckets drain, which errs on the strict
// side.
func (s *Store) refund(ctx context.Context, now int64, taken []take) {
	if len(taken) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	calls := make([]scriptCall, len(taken))
	for i, tk := range taken {
		calls[i] = scriptCall{refundScript, []string{tk.key}, []any{now, tk.t}}
	}
	_, _ = s.runAll(ctx, calls)
}

// ConsumeCode implements authd.CodeStore. One round trip; two in split
// mode. Besides the documented results, it reports the client-IP limit's
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
		// The IP pays for every try it is allowed, whatever comes next:
		// nothing to give back.
		var takes []take
		if ipT > 0 {
			takes = []take{{key: ipKey, t: ipT, n: ipN, limit: "verify_per_ip"}}
		}
		_, first, err := s.take(ctx, now, takes)
		if err != nil {
			return authd.ConsumeResult{}, err
		}
		ip = first
		r, err := s.runAll(ctx, []scriptCall{{consumeAddressScript,
			[]string{k.fail, k.code},
			[]any{now, failT, failN, req.Hash, maxAtt}}})
		if err != nil {
			return authd.ConsumeResult{}, err
		}
		reply = asSlice(r[0])
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
