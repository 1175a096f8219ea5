package redis

import (
	"context"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// IssueCode implements authd.CodeStore: issue.lua, one round trip on a
// single Redis; on a Redis Cluster, the limits first (split.go).
func (s *Store) IssueCode(ctx context.Context, req authd.IssueRequest) (authd.IssueResult, error) {
	now := req.Now.UnixMicro()
	// In IssueCode's order of checks: the client IP, the mails in total,
	// the project's mails.
	limits := []limit{
		{key: s.ipKey(req.ClientIP, "send"), name: "send_per_ip", rate: req.SendPerIP},
		{key: s.totalKey(), name: "mails_total", rate: req.MailsTotal},
		{key: s.projectKey(req.MailsOf()), name: "mails_per_project", rate: req.MailsPerProject},
	}
	keys, args := s.issueAddress(req)
	if s.split {
		return s.issueSplit(ctx, now, limits, keys, args)
	}
	r, short, err := s.runIssue(ctx, keys[0], limitsCall(issueScript, now, limits, keys, args))
	if err != nil {
		return authd.IssueResult{}, err
	}
	v, err := parseIssue(r, 1+2*len(limits))
	if err != nil {
		var res authd.IssueResult
		if st, ok := refusalIPState(r); ok {
			res.IP = limitState(req.SendPerIP, st[0], st[1])
		}
		return res, err
	}
	if short != nil {
		return authd.IssueResult{}, s.shortOf(short)
	}
	return authd.IssueResult{Replaced: v[0] == 1, IP: limitState(req.SendPerIP, v[1], v[2]), Mails: limitState(req.MailsTotal, v[3], v[4])}, nil
}

// runIssue runs issue.lua's call for the address whose code key is key
// and returns its reply; with Options.WaitReplicas, WAIT follows it
// (wait.go), and short is the answer to give if the script wrote.
func (s *Store) runIssue(ctx context.Context, key string, c scriptCall) (reply any, short error, err error) {
	if s.waitReplicas > 0 {
		return s.waitCall(ctx, key, c)
	}
	r, err := s.runAll(ctx, []scriptCall{c})
	if err != nil {
		return nil, nil, err
	}
	return r[0], nil, nil
}

// shortOf counts a write too few replicas acknowledged, and returns short.
func (s *Store) shortOf(short error) error {
	s.waitShort.Add(1)
	return short
}

// issueAddress returns issue.lua's keys and arguments of the address's
// side: everything in the address's hash slot.
func (s *Store) issueAddress(req authd.IssueRequest) (keys []string, args []any) {
	sentT, sentN := rateArgs(req.CodesPerAddress)
	k := s.keysOf(req.Address, req.Project)
	rec := req.Record
	keys = []string{k.code, k.cool, k.sent}
	args = []any{max(req.ResendCooldown.Microseconds(), 0), sentT, sentN, rec.ID, rec.Hash, rec.ExpiresAt.UnixMicro()}
	if j := req.Job; j != nil {
		// The status beside the job, in the address's slot. Delivery finds
		// it from the id's partition, which authd.NewDeliveryID's ids carry:
		// the status of a mail whose id names another one is not found.
		keys = append(keys, k.mail, statusKey(k.tag, j.DeliveryID))
		args = append(args, j.DeliveryID, j.Address.Key, j.Address.Mailbox, j.Project, j.ReplaceableAt.UnixMicro(), j.Sealed)
	}
	return keys, args
}

// limit is one of the limits checked before the address's (lib.lua's
// limits_check): the client IP's, the project's.
type limit struct {
	key  string
	name string
	rate authd.Rate
}

// limitsCall is issue.lua's or consume.lua's call with limits before the
// address's keys and arguments (none on a Redis Cluster: split.go).
func limitsCall(sc *goredis.Script, now int64, limits []limit, keys []string, args []any) scriptCall {
	k := make([]string, 0, len(limits)+len(keys))
	a := make([]any, 0, 2+3*len(limits)+len(args))
	a = append(a, now, len(limits))
	for _, l := range limits {
		t, n := rateArgs(l.rate)
		k = append(k, l.key)
		a = append(a, l.name, t, n)
	}
	return scriptCall{sc, append(k, keys...), append(a, args...)}
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

// ConsumeCode implements authd.CodeStore: consume.lua, one round trip on
// a single Redis; on a Redis Cluster, the IP's limit first (split.go).
// Besides the documented results, it reports the client-IP limit's state
// with ErrInvalidCode too, for the response headers.
func (s *Store) ConsumeCode(ctx context.Context, req authd.ConsumeRequest) (authd.ConsumeResult, error) {
	now := req.Now.UnixMicro()
	ip := limit{key: s.ipKey(req.ClientIP, "verify"), name: "verify_per_ip", rate: req.VerifyPerIP}
	failT, failN := rateArgs(req.FailuresPerAddress)
	k := s.keysOf(req.Address, req.Project)
	keys := []string{k.fail, k.code}
	args := []any{failT, failN, req.Hash, max(req.AttemptsPerCode, 0)}

	var reply []any
	var ipState [2]int64
	if s.split {
		var err error
		if ipState, reply, err = s.consumeSplit(ctx, now, ip, keys, args); err != nil {
			return authd.ConsumeResult{}, err
		}
	} else {
		r, err := s.runAll(ctx, []scriptCall{limitsCall(consumeScript, now, []limit{ip}, keys, args)})
		if err != nil {
			return authd.ConsumeResult{}, err
		}
		if ipState, reply, err = parseConsumeReply(r[0]); err != nil {
			return authd.ConsumeResult{}, err
		}
	}
	res := authd.ConsumeResult{IP: limitState(req.VerifyPerIP, ipState[0], ipState[1])}
	rec, err := parseConsume(reply)
	if err != nil {
		return res, err
	}
	res.Record = rec
	return res, nil
}

// parseConsumeReply reads consume.lua's reply: a refusal by its limit, or
// the first limit's state and consume_address's reply.
func parseConsumeReply(r any) (first [2]int64, reply []any, err error) {
	a := asSlice(r)
	if len(a) == 0 {
		return first, nil, badReply(r)
	}
	if isLimit, err := parseLimit(a); isLimit {
		return first, nil, err
	}
	if len(a) < 3 {
		return first, nil, badReply(r)
	}
	v, err := ints(a[:2], 2)
	if err != nil {
		return first, nil, err
	}
	return [2]int64{v[0], v[1]}, a[2:], nil
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
func (s *Store) RestoreCode(ctx context.Context, address authd.Address, project string, rec authd.CodeRecord, now time.Time) error {
	_, err := s.runAll(ctx, []scriptCall{{restoreScript,
		[]string{s.keysOf(address, project).code},
		[]any{now.UnixMicro(), rec.ID, rec.Hash, rec.ExpiresAt.UnixMicro(), max(rec.Attempts, 0)}}})
	return err
}

// IsCurrent implements authd.CodeStore.
func (s *Store) IsCurrent(ctx context.Context, address authd.Address, project, id string, now time.Time) (bool, error) {
	v, err := s.client.HMGet(ctx, s.keysOf(address, project).code, "id", "exp").Result()
	if err != nil {
		return false, unavailable(err)
	}
	return codeLive(v, id, now)
}

// codeLive reads IsCurrent's HMGET of a code's id and expiry: whether it
// is the code named id, not expired at now.
func codeLive(v []any, id string, now time.Time) (bool, error) {
	if len(v) != 2 {
		return false, badReply(v)
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
func (s *Store) Unlock(ctx context.Context, mailbox string) error {
	// Both keys share the mailbox's slot: one DEL even on a cluster.
	k := s.keysOf(authd.Address{Key: mailbox, Mailbox: mailbox}, "")
	if err := s.client.Del(ctx, k.fail, k.sent).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}
