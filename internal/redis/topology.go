package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// go-redis's cluster client reloads its slot map (CLUSTER SLOTS) only when
// a node answers MOVED, ASK or READONLY, and otherwise once it is older
// than ClusterStateReloadInterval (60 s), checked as commands use it. A
// master that dies answers nothing: its slots' commands meet a refused
// connection, never a MOVED, so after its replica has been promoted the
// client goes on sending them to the dead address — 503s for up to a
// minute. No retry option changes that: the dead node is asked again,
// however often.
//
// reloadHook closes that gap: a command that fails as a failover makes it
// fail (the network: refused, reset, timed out; the cluster: CLUSTERDOWN,
// TRYAGAIN, MASTERDOWN) asks for a reload, at most once per reloadEvery.
// While the cluster has not promoted a replica the reload finds the same
// map and costs one CLUSTER SLOTS; the first failure after the promotion
// finds the new master.
type reloadHook struct {
	reload func()
	every  time.Duration
	now    func() time.Time
	last   atomic.Int64 // UnixNano of the last reload asked for
}

// reloadEvery bounds how often one client asks for its slot map: a
// failover is seen at most this long after the cluster has made it, and a
// long outage costs a CLUSTER SLOTS no more than four times a second per
// instance.
const reloadEvery = 250 * time.Millisecond

func newReloadHook(c *goredis.ClusterClient) *reloadHook {
	return &reloadHook{
		reload: func() { c.ReloadState(context.Background()) },
		every:  reloadEvery,
		now:    time.Now,
	}
}

var _ goredis.Hook = (*reloadHook)(nil)

func (h *reloadHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *reloadHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if topologyFault(err) {
			h.fault()
		}
		return err
	}
}

func (h *reloadHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil {
			// The pipeline's error is its first command's: another may
			// have met the dead node.
			for _, c := range cmds {
				if topologyFault(c.Err()) {
					h.fault()
					break
				}
			}
		}
		return err
	}
}

// fault asks for a reload unless one was asked for within h.every.
func (h *reloadHook) fault() {
	now := h.now().UnixNano()
	last := h.last.Load()
	if now-last < int64(h.every) || !h.last.CompareAndSwap(last, now) {
		return
	}
	h.reload()
}

// topologyFault reports whether err is what a command meets when the
// node it was sent to is gone or the cluster is changing masters: a
// network error (a refused dial, a reset or closed connection, a timeout)
// or CLUSTERDOWN, TRYAGAIN, MASTERDOWN. A reply about the command itself
// (a script error, NOSCRIPT, WRONGTYPE), a missing key, or a caller that
// gave up is not.
func topologyFault(err error) bool {
	switch {
	case err == nil, errors.Is(err, goredis.Nil), errors.Is(err, context.Canceled),
		errors.Is(err, goredis.ErrClosed), errors.Is(err, goredis.ErrPoolTimeout):
		return false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return true
	}
	for _, prefix := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN"} {
		if goredis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
