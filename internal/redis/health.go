package redis

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// Ping checks that Redis answers, for the readiness probe. It is not part
// of authd.CodeStore: the in-memory store has nothing to check.
//
// Errors: EUNAVAILABLE, its cause the server's reply (a wrong database
// index, a refused password) or the network's error.
//
// On a Redis Cluster it asks every master, and Redis answers while any
// does: a master down costs the requests of its own slots a 503 until its
// replica is promoted, and readiness failing on every instance for it
// would have a load balancer pull them all, costing every request. (Through
// the cluster client PING would reach one node of its choosing.)
func (s *Store) Ping(ctx context.Context) error {
	cc, isCluster := s.client.(*goredis.ClusterClient)
	if !isCluster {
		if err := s.client.Ping(ctx).Err(); err != nil {
			return unavailable(err)
		}
		return nil
	}
	var answered atomic.Bool
	var failed atomic.Pointer[error]
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		if err := c.Ping(ctx).Err(); err != nil {
			failed.Store(&err)
		} else {
			answered.Store(true)
		}
		return nil
	})
	switch {
	case answered.Load():
		return nil
	case err != nil:
		return unavailable(err)
	case failed.Load() != nil:
		return unavailable(*failed.Load())
	}
	return unavailable(errors.New("no master to ask"))
}

// CheckEviction reads the server's maxmemory-policy; ok is true only for
// "noeviction": under any other policy Redis may drop limits and codes when
// full. Managed Redis services often refuse CONFIG; then the policy is read
// from INFO memory, and if that is refused too, policy is "" and ok false
// with a nil error: the caller should warn, not fail.
//
// On a Redis Cluster every master is asked: ok only when all say
// noeviction; policy is the first other one found, else "" when a master
// would not say, else "noeviction". (Through the cluster client CONFIG GET
// would reach one node at random.) A replica that a failover promotes is
// asked from then on: readiness checks on every probe.
//
// Errors: EUNAVAILABLE, its cause the server's reply or the network's
// error, when Redis cannot be used at all: unreachable, or refusing every
// command (a database index out of range, a wrong password, loading). Only
// a refusal of CONFIG or INFO themselves means "cannot tell".
func (s *Store) CheckEviction(ctx context.Context) (policy string, ok bool, err error) {
	cc, isCluster := s.client.(*goredis.ClusterClient)
	if !isCluster {
		return checkEviction(ctx, s.client)
	}
	var mu sync.Mutex
	var bad, unknown bool
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		p, pok, err := checkEviction(ctx, node)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case pok, bad:
		case p != "":
			bad, policy = true, p
		default:
			unknown = true
		}
		return nil
	})
	switch {
	case err != nil && authd.ErrorCode(err) != authd.EUNAVAILABLE: // the cluster's own, not a node's
		return "", false, unavailable(err)
	case err != nil:
		return "", false, err
	case bad:
		return policy, false, nil
	case unknown:
		return "", false, nil
	}
	return "noeviction", true, nil
}

// checkEviction is CheckEviction on one server.
func checkEviction(ctx context.Context, c goredis.Cmdable) (policy string, ok bool, err error) {
	cfg, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	switch {
	case err == nil:
		if p, found := cfg["maxmemory-policy"]; found {
			return p, p == "noeviction", nil
		}
	case !commandRefused(err):
		return "", false, unavailable(err)
	}
	info, err := c.Info(ctx, "memory").Result()
	switch {
	case commandRefused(err):
		return "", false, nil
	case err != nil:
		return "", false, unavailable(err)
	}
	p := infoField(info, "maxmemory_policy")
	return p, p == "noeviction", nil
}

// commandRefused reports whether err is the server refusing the command
// itself: not permitted to this user (ACL), renamed or disabled (managed
// services), unknown. Any other reply — a connection that could not be
// set up (SELECT, AUTH), a server loading its data — is not about the
// command, and every other command would meet it too.
func commandRefused(err error) bool {
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := strings.ToLower(rerr.Error())
	if strings.HasPrefix(msg, "noperm") {
		return true
	}
	for _, s := range []string{"unknown command", "unknown subcommand", "not allowed", "disabled"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// infoField returns the value of name in an INFO reply, or "".
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, found := strings.CutPrefix(strings.TrimSpace(line), name+":"); found {
			return v
		}
	}
	return ""
}
