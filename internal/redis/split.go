package redis

import (
	"context"

	"github.com/authd/authd"
)

// The Redis Cluster path (also Ring, or Options.Split): one script may
// not span hash slots, and the client-IP and project limits live in other
// slots than the address's state. So the limits are taken first, each by
// take.lua in its own slot, in one pipeline (one round trip); only when
// all allow does the address's script run (a second): issue.lua or
// consume.lua, the very scripts of a single Redis, given no limits. It
// checks the address's own limits and then does everything — the code,
// the mail job, its status — or nothing.
//
// A request refused by a limit is refused before anything of the address
// is touched: its mail job never exists, so no worker can send it. When
// the address's script refuses a send (cooldown, codes per address), or
// one limit refuses while another had allowed, the limits' tokens are
// given back (refund.lua, a third round trip, refusals only): a refused
// request counts nowhere, as on a single Redis. Until then it holds its
// tokens, which can only make a concurrent request's limits stricter.
//
// ConsumeCode takes no refund: the IP pays for every try it is allowed.
//
// A call that fails midway is answered EUNAVAILABLE. When the limits'
// pipeline fails, the tokens it did take are given back; when the
// address's script fails after the limits were taken, its outcome is
// unknown and the tokens stay taken: the strict side.

// issueSplit is IssueCode on a Redis Cluster.
func (s *Store) issueSplit(ctx context.Context, now int64, limits []limit, keys []string, args []any) (authd.IssueResult, error) {
	ip := limits[0].rate
	taken, err := s.takeLimits(ctx, now, limits)
	var res authd.IssueResult
	if first := taken.first(); first != nil {
		res.IP = limitState(ip, first.remaining, first.reset)
	}
	if err != nil {
		return refused(taken, ip, err)
	}
	r, short, err := s.runIssue(ctx, keys[0], limitsCall(issueScript, now, nil, keys, args))
	if err != nil {
		return authd.IssueResult{}, err
	}
	v, err := parseIssue(r, 1)
	if authd.ErrorCode(err) == authd.ERATELIMITED {
		s.refund(ctx, now, taken)
	}
	if err != nil {
		return refused(taken, ip, err)
	}
	if short != nil {
		// Stored, not known to be replicated: the tokens stay taken, as
		// the code does (wait.go).
		return authd.IssueResult{}, s.shortOf(short)
	}
	res.Replaced = v[0] == 1
	if st := taken.named("mails_total"); st != nil {
		res.Mails = limitState(st.rate, st.remaining, st.reset)
	}
	return res, nil
}

// refused is IssueCode's answer to a refusal: as on a single Redis, a
// refusal by a later limit than the client IP's reports the IP's limit as
// it stands without this request.
func refused(tk taken, ip authd.Rate, err error) (authd.IssueResult, error) {
	if authd.ErrorCode(err) != authd.ERATELIMITED {
		return authd.IssueResult{}, err
	}
	return authd.IssueResult{IP: tk.without(ip)}, err
}

// consumeSplit is ConsumeCode's Redis part on a Redis Cluster: the IP's
// limit (round trip 1: refused, nothing else is touched), then the
// address's try (round trip 2). It returns what consume.lua does on a
// single Redis: the IP's remaining and reset, and consume_address's
// reply.
func (s *Store) consumeSplit(ctx context.Context, now int64, ip limit, keys []string, args []any) ([2]int64, []any, error) {
	taken, err := s.takeLimits(ctx, now, []limit{ip})
	if err != nil {
		return [2]int64{}, nil, err
	}
	var state [2]int64
	if first := taken.first(); first != nil {
		state = [2]int64{first.remaining, first.reset}
	}
	r, err := s.runAll(ctx, []scriptCall{limitsCall(consumeScript, now, nil, keys, args)})
	if err != nil {
		return [2]int64{}, nil, err
	}
	_, reply, err := parseConsumeReply(r[0])
	return state, reply, err
}

// taken are the limits takeLimits took, in the order they were asked for.
type taken []takenLimit

type takenLimit struct {
	limit
	index            int // among the limits asked for
	remaining, reset int64
}

// named is the limit called name, if it was taken.
func (tk taken) named(name string) *takenLimit {
	for i := range tk {
		if tk[i].name == name {
			return &tk[i]
		}
	}
	return nil
}

// first is the first limit asked for (the client IP's), if it was taken.
func (tk taken) first() *takenLimit {
	if len(tk) > 0 && tk[0].index == 0 {
		return &tk[0]
	}
	return nil
}

// without is the first limit's state without this request (one event
// less), for a refusal by a later limit; zero when it was not taken.
func (tk taken) without(r authd.Rate) authd.LimitState {
	first := tk.first()
	if first == nil {
		return authd.LimitState{}
	}
	t, _ := rateArgs(r)
	return limitState(r, first.remaining+1, first.reset-t)
}

// takeLimits takes one event of each limit that is on, all in one
// pipeline. If any refuses (the first in the order asked for is
// reported) or fails, those taken are given back and the error returned;
// otherwise the taken limits, with their state after the event.
func (s *Store) takeLimits(ctx context.Context, now int64, limits []limit) (taken, error) {
	var on []limit
	var index []int
	var calls []scriptCall
	for i, l := range limits {
		if l.rate.Off() {
			continue
		}
		t, n := rateArgs(l.rate)
		on, index = append(on, l), append(index, i)
		calls = append(calls, scriptCall{takeScript, []string{l.key}, []any{now, t, n}})
	}
	if len(calls) == 0 {
		return nil, nil
	}
	replies, err := s.runAll(ctx, calls)
	var tk taken
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
			tk = append(tk, takenLimit{limit: on[i], index: index[i], remaining: v[1], reset: v[2]})
		case refusal == nil:
			refusal = limited(on[i].name, v[1])
		}
	}
	if err == nil {
		err = refusal
	}
	if err != nil {
		s.refund(ctx, now, tk)
		// The state of what was taken stays: the caller reports the
		// client IP's beside a later limit's refusal.
		return tk, err
	}
	return tk, nil
}

// refund gives back the events taken for a request that was then refused
// (refund.lua, one pipeline). It does not give up with the request's
// context: a token left taken makes a limit stricter until it drains. A
// refund that fails leaves it so; the refusal stands.
func (s *Store) refund(ctx context.Context, now int64, tk taken) {
	if len(tk) == 0 {
		return
	}
	calls := make([]scriptCall, len(tk))
	for i, l := range tk {
		t, _ := rateArgs(l.rate)
		calls[i] = scriptCall{refundScript, []string{l.key}, []any{now, t}}
	}
	_, _ = s.runAll(context.WithoutCancel(ctx), calls)
}

func asSlice(v any) []any {
	a, _ := v.([]any)
	return a
}
