package redis

import (
	"context"

	"github.com/authd/authd"
)

// Split mode (Redis Cluster, Ring, or Options.Split): one script may not
// span hash slots, and the client-IP limit, the project limit, the address's
// state and a delivery's status live in four. Each slot gets its own script,
// all sent in ONE pipeline: on the success path a call costs one round trip,
// as in single mode. The scripts cannot see each other, so each does its
// part as if the others would agree; when one refuses, what the others did
// is taken back in a second round trip (refusals only): the limits' events
// are given back (refund.lua), the address's script is undone from what it
// reports it overwrote (undo_issue.lua, undo_consume.lua), the delivery
// status is deleted. The final state is single mode's: a refused request
// changes nothing and counts nowhere.
//
// What differs is the window between the two round trips: for its length a
// refused request holds its tokens, which can only make the limits stricter
// for a concurrent request, and its code is stored and its mail job queued.
// A worker that claims the job in that window may send it (it skips the
// code check before the resend cooldown ends), but the code it mails no
// longer works once the undo has run. If a newer code of (project, address)
// was stored in the window, or the code used, that state stays: only the
// refused request's own events, job and status are taken back. A call that
// fails midway (Redis down) is taken back as far as its replies tell, and
// answered EUNAVAILABLE; a script whose reply was lost is not taken back
// (its tokens stay taken: the strict side).

// issueSplit is IssueCode in split mode.
func (s *Store) issueSplit(ctx context.Context, req authd.IssueRequest) (authd.IssueResult, error) {
	now := req.Now.UnixMicro()
	ipT, ipN := rateArgs(req.SendPerIP)
	pT, pN := rateArgs(req.MailsPerProject)
	sentT, sentN := rateArgs(req.CodesPerAddress)
	cool := max(req.ResendCooldown.Microseconds(), 0)
	k := s.keysOf(req.Address, req.Project)
	rec := req.Record
	exp := rec.ExpiresAt.UnixMicro()

	// The calls, in the order their refusals are reported (IssueCode's check
	// order). A limit that is off costs no call.
	var takes []take
	if ipT > 0 {
		takes = append(takes, take{key: s.ipKey(req.ClientIP, "send"), t: ipT, n: ipN, limit: "send_per_ip"})
	}
	if pT > 0 {
		takes = append(takes, take{key: s.projectKey(req.Project), t: pT, n: pN, limit: "mails_per_project"})
	}
	calls := make([]scriptCall, 0, len(takes)+2)
	for _, tk := range takes {
		calls = append(calls, tk.call(now))
	}
	addr := scriptCall{issueAddressScript,
		[]string{k.code, k.cool, k.sent},
		[]any{now, cool, sentT, sentN, rec.ID, rec.Hash, exp}}
	if j := req.Job; j != nil {
		addr.keys = append(addr.keys, k.mail)
		addr.args = append(addr.args, jobArgs(j)...)
	}
	calls = append(calls, addr)
	if j := req.Job; j != nil {
		calls = append(calls, scriptCall{statusInitScript, []string{s.statusKey(j.DeliveryID)}, []any{now, exp}})
	}
	replies, err := s.runAll(ctx, calls)

	var (
		refusal error
		undo    []scriptCall
		res     authd.IssueResult
		ip      *takeResult // the client IP's take, when its limit is on
	)
	refuse := func(e error) {
		if refusal == nil {
			refusal = e
		}
	}
	for i, tk := range takes {
		r := tk.parse(replies[i])
		switch {
		case r.err != nil:
			if err == nil {
				err = r.err
			}
		case r.taken:
			undo = append(undo, tk.refund(now))
			if tk.limit == "send_per_ip" {
				ip = &r
				res.IP = limitState(req.SendPerIP, r.remaining, r.reset)
			}
		case r.refused != nil:
			refuse(r.refused)
		}
	}
	// The address's reply; nil when its call failed (err says so).
	if r := replies[len(takes)]; r != nil {
		a := asSlice(r)
		var kind string
		if len(a) > 0 {
			kind, _ = a[0].(string)
		}
		switch {
		case kind == "limit":
			_, lerr := parseLimit(a)
			refuse(lerr)
		case kind == "ok" && len(a) == 14:
			replaced, _ := a[1].(int64)
			res.Replaced = replaced == 1
			undoArgs := append([]any{now, rec.ID, sentT}, a[2:]...)
			undo = append(undo, scriptCall{undoIssueScript,
				[]string{k.code, k.cool, k.sent, k.mail}, undoArgs})
		case err == nil:
			err = badReply(r)
		}
	}
	if j := req.Job; j != nil && replies[len(takes)+1] != nil {
		// The status is this request's (its id is 128 random bits), in
		// whatever state a worker may have put it since. status.lua deletes
		// a status whose code has expired: "expired at now" is what a code
		// that was never issued amounts to.
		undo = append(undo, scriptCall{statusScript, []string{s.statusKey(j.DeliveryID)},
			[]any{now, now, "", 0, 0}})
	}
	if err == nil && refusal == nil {
		return res, nil
	}
	if uerr := s.compensate(ctx, undo); err == nil {
		err = uerr
	}
	if err != nil {
		return authd.IssueResult{}, err
	}
	// As in single mode: a refusal by a later limit reports the client-IP
	// limit as it stands without this request, one event less (the IP's
	// own refusal reports nothing: then it took nothing).
	if ip != nil {
		return authd.IssueResult{IP: limitState(req.SendPerIP, ip.remaining+1, ip.reset-ipT)}, refusal
	}
	return authd.IssueResult{}, refusal
}

// consumeSplit is ConsumeCode's Redis part in split mode: the client-IP take
// and the address's try in one pipeline. It returns what single mode's
// consume.lua does: the IP's remaining and reset, and consume_address's
// reply. If the IP is refused, the try is taken back: in single mode it
// would not have been made. If the address refuses, the IP's token stays
// spent, as in single mode: the IP pays for every try it is allowed.
func (s *Store) consumeSplit(ctx context.Context, req authd.ConsumeRequest) ([2]int64, []any, error) {
	now := req.Now.UnixMicro()
	ipT, ipN := rateArgs(req.VerifyPerIP)
	failT, failN := rateArgs(req.FailuresPerAddress)
	k := s.keysOf(req.Address, req.Project)
	var ip [2]int64

	var takes []take
	if ipT > 0 {
		takes = []take{{key: s.ipKey(req.ClientIP, "verify"), t: ipT, n: ipN, limit: "verify_per_ip"}}
	}
	calls := make([]scriptCall, 0, 2)
	for _, tk := range takes {
		calls = append(calls, tk.call(now))
	}
	calls = append(calls, scriptCall{consumeAddressScript,
		[]string{k.fail, k.code},
		[]any{now, failT, failN, req.Hash, max(req.AttemptsPerCode, 0)}})
	replies, err := s.runAll(ctx, calls)

	// The IP's verdict: allowed (no limit, or taken), or why not.
	var ipErr error
	for i, tk := range takes {
		r := tk.parse(replies[i])
		switch {
		case r.err != nil:
			ipErr = r.err
		case r.refused != nil:
			ipErr = r.refused
		default:
			ip = [2]int64{r.remaining, r.reset}
		}
	}
	var reply, undo []any
	// The address's reply: {consume_address's reply, undo}; nil when its
	// call failed (err says so).
	if r := replies[len(takes)]; r != nil {
		if a := asSlice(r); len(a) == 2 {
			reply, undo = asSlice(a[0]), asSlice(a[1])
		} else if err == nil {
			err = badReply(r)
		}
	}
	if err == nil && ipErr == nil {
		return ip, reply, nil
	}
	if len(undo) > 0 {
		uerr := s.compensate(ctx, []scriptCall{{undoConsumeScript,
			[]string{k.fail, k.code}, append([]any{now, failT}, undo...)}})
		if err == nil {
			err = uerr
		}
	}
	if err == nil {
		err = ipErr
	}
	return [2]int64{}, nil, err
}

// compensate runs the calls that take back a refused request's effects
// (the second round trip, refusals only). It does not give up with the
// request's context: an undo left half done is worse than a late one. If it
// fails, the caller answers EUNAVAILABLE: the request was neither done nor
// refused cleanly.
func (s *Store) compensate(ctx context.Context, calls []scriptCall) error {
	if len(calls) == 0 {
		return nil
	}
	_, err := s.runAll(context.WithoutCancel(ctx), calls)
	return err
}

// take is one GCRA limit counted by take.lua in its own slot.
type take struct {
	key   string
	t, n  int64
	limit string
}

func (tk take) call(now int64) scriptCall {
	return scriptCall{takeScript, []string{tk.key}, []any{now, tk.t, tk.n}}
}

// refund gives the event back (refund.lua).
func (tk take) refund(now int64) scriptCall {
	return scriptCall{refundScript, []string{tk.key}, []any{now, tk.t}}
}

// takeResult is take.lua's reply: taken (with the limit's state after it),
// or refused, or not understood (err; nil reply: the call failed, and
// runAll's error says so).
type takeResult struct {
	taken            bool
	remaining, reset int64
	refused          error
	err              error
}

func (tk take) parse(reply any) takeResult {
	if reply == nil {
		return takeResult{}
	}
	v, err := ints(asSlice(reply), 3)
	switch {
	case err != nil:
		return takeResult{err: err}
	case v[0] == 1:
		return takeResult{taken: true, remaining: v[1], reset: v[2]}
	}
	return takeResult{refused: limited(tk.limit, v[1])}
}

func asSlice(v any) []any {
	a, _ := v.([]any)
	return a
}
