package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// Redis replicates asynchronously: a master answers a write before any
// replica has it, and a master lost before it passed the write on takes
// it along. For send-code that is a 200 whose code and mail job are gone:
// the mail is never sent, the user asks again after the cooldown.
//
// With Options.WaitReplicas, IssueCode sends the address's script and
// WAIT numreplicas timeout in one pipeline, on one connection of the node
// that holds the address's slot: WAIT counts the writes made on its own
// connection, and on a cluster only the master that took the write knows
// what its replicas have. The pipeline costs no round trip of its own;
// the wait is the replicas' acknowledgement, at most WaitTimeout.
//
// It narrows the loss window; it does not make the write durable. An
// acknowledgement means a replica holds the write in memory, not on disk;
// a failover may still promote a replica that had not acknowledged it;
// and on a cluster the limits taken first, in other slots, are not waited
// for (a lost token only loosens a limit for a while).
//
// Fewer acknowledgements than asked within WaitTimeout is EUNAVAILABLE,
// and nothing is undone: the code and its job stay stored. An undo would
// itself be unacknowledged, could not reach a master that is gone, and
// could come after a worker had already sent the mail. So a 503 here
// means "stored, but not known to survive a failover": most often the
// master is fine and the mail goes out; if the master was lost with it, a
// retry stores a new code; if not, a retry within the resend cooldown is
// answered 429 with Retry-After, and the first mail is on its way.
// Nothing is lost either way.

// waitCall is issue.lua's call on the node that holds key, and WAIT after
// it. It returns the script's reply and, when the script ran, a non-nil
// short when fewer replicas than asked acknowledged what the connection
// wrote (the caller answers it only when the script wrote).
func (s *Store) waitCall(ctx context.Context, key string, c scriptCall) (reply any, short error, err error) {
	node, err := s.nodeOf(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	reply, acked, waitErr, err := waitPipeline(ctx, node, c, s.waitReplicas, s.waitTimeout, false)
	if goredis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not run (a restarted or promoted node): once more, loading it.
		reply, acked, waitErr, err = waitPipeline(ctx, node, c, s.waitReplicas, s.waitTimeout, true)
	}
	if s.onFault != nil && (topologyFault(err) || topologyFault(waitErr)) {
		s.onFault() // the node's own client has none of the cluster's hooks
	}
	if err != nil {
		if cc, ok := s.client.(*goredis.ClusterClient); ok && (goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK")) {
			// The slot moved: the script did not run, and the next call
			// goes to the node the cluster names now.
			cc.ReloadState(ctx)
		}
		return nil, nil, unavailable(err)
	}
	switch {
	case waitErr != nil:
		short = fmt.Errorf("WAIT after the write failed: %w", waitErr)
	case acked < int64(s.waitReplicas):
		short = fmt.Errorf("%d of %d replicas acknowledged the write within %v", acked, s.waitReplicas, s.waitTimeout)
	}
	if short != nil {
		short = unavailable(short)
	}
	return reply, short, nil
}

// waitPipeline sends the script (EVALSHA, or EVAL when load) and WAIT in
// one pipeline: one connection, one round trip.
func waitPipeline(ctx context.Context, node *goredis.Client, c scriptCall, n int, timeout time.Duration, load bool) (reply any, acked int64, waitErr, err error) {
	var run *goredis.Cmd
	wait := goredis.NewIntCmd(ctx, "wait", n, max(timeout.Milliseconds(), 1)) // WAIT n 0 waits for ever
	// Each command's error is read below; Exec's is the first of them.
	_, _ = node.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if load {
			run = c.script.Eval(ctx, p, c.keys, c.args...)
		} else {
			run = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return p.Process(ctx, wait)
	})
	if reply, err = run.Result(); err != nil {
		return nil, 0, nil, err
	}
	acked, waitErr = wait.Result()
	return reply, acked, waitErr, nil
}

// nodeOf is the client of the node that holds key: the master of its slot
// on a cluster, the one server otherwise.
func (s *Store) nodeOf(ctx context.Context, key string) (*goredis.Client, error) {
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, unavailable(err)
		}
		return node, nil
	case *goredis.Client: // a single Redis, or Sentinel's master
		return c, nil
	}
	return nil, &authd.Error{Code: authd.EINTERNAL, Message: "redis: WaitReplicas needs a single Redis, Sentinel or Cluster client",
		Err: fmt.Errorf("client %T", s.client)}
}
