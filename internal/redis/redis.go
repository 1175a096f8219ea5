// Package redis implements authd.CodeStore on Redis: codes, resend
// cooldowns and every GCRA limit of DESIGN.md §2, each call one Lua script
// (one round trip) on a single Redis or Sentinel, one pipeline of scripts
// (one round trip too) on a Redis Cluster.
//
// Key layout (P is Options.Prefix, B a bucket of 64 derived from the
// address key, so that an address's keys share one hash slot):
//
//	P{a:B}:code:<project>:<address>  hash: id, h (code hash), exp, att
//	P{a:B}:cool:<project>:<address>  end of the resend cooldown
//	P{a:B}:sent:<address>            GCRA: codes per address
//	P{a:B}:fail:<address>            GCRA: failures per address
//	P{ip:<ip>}:send, P{ip:<ip>}:verify  GCRA: per client IP
//	P{p:<project>}:mails             GCRA: mails per project
//	P{a:B}:mail                      stream: the bucket's mail jobs (queue.go)
//	P{d:<delivery id>}:dlv           hash: a delivery's status, until its code expires
//
// Project IDs are expected valid (authd.ValidProjectID) and address keys
// to be authd.AddressKey's: neither may contain ':' or braces.
//
// GCRA state is the bucket's theoretical arrival time. All times are the
// caller's (the requests' Now), never the server's; TTLs only reclaim
// memory.
//
// On Redis Cluster (and Ring) the client-IP and project keys live in other
// slots than the address's, and one script may not span slots: the store
// then runs in split mode (see Options.Split and split.go): one script per
// slot, all in one pipeline, so that a call still costs one round trip; a
// request refused by one slot costs a second, which takes back what the
// others did.
//
// How fast a down Redis is reported is the client's business: with
// go-redis's defaults (5 dials, 3 retries) it takes about 1.7 s; with
// MaxRetries 1 and DialerRetries 1, a few milliseconds.
package redis

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// Options configure a Store.
type Options struct {
	// Prefix starts every key, so that several deployments (or tests) can
	// share a Redis. Default "authd:". It must not contain '{' or '}', which
	// would move the hash tags.
	Prefix string

	// Split forces split mode, which the store otherwise uses only on a
	// Redis Cluster or Ring client: each hash slot (client IP, project,
	// address, delivery status) gets its own script, all sent in one
	// pipeline, so that a call still costs one round trip. When one refuses,
	// a second round trip takes back what the others did (events given
	// back, the address's writes undone, the queued job and its status
	// deleted), ending where single mode would have: a refused request
	// changes nothing and counts nowhere. For the length of that round trip
	// a refused request holds its tokens, which can only make the limits
	// stricter, and its mail job is queued: a worker that takes it then may
	// send a code that no longer works. Tests set it to run the contract
	// suite through this path on a single Redis.
	Split bool
}

// Store is the Redis CodeStore.
type Store struct {
	client goredis.UniversalClient
	prefix string
	split  bool
	queue  queueState
}

var _ authd.CodeStore = (*Store)(nil)

// New returns a Store on client. The client's own options (timeouts,
// retries, pool) decide how fast a down Redis is reported.
func New(client goredis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "authd:"
	}
	split := opts.Split
	switch client.(type) {
	case *goredis.ClusterClient, *goredis.Ring:
		split = true
	}
	return &Store{client: client, prefix: opts.Prefix, split: split}
}

// addressBuckets is how many hash slots the addresses' keys are spread
// over: enough to spread the load over a cluster's nodes.
const addressBuckets = 64

// addressKeys are the keys of one address, all under its bucket's hash
// tag.
type addressKeys struct{ code, cool, sent, fail, mail string }

// keysOf returns the keys of address (code and cooldown of project).
func (s *Store) keysOf(address, project string) addressKeys {
	h := fnv.New32a()
	h.Write([]byte(address))
	tag := s.prefix + "{a:" + strconv.FormatUint(uint64(h.Sum32()%addressBuckets), 10) + "}:"
	return addressKeys{
		code: tag + "code:" + project + ":" + address,
		cool: tag + "cool:" + project + ":" + address,
		sent: tag + "sent:" + address,
		fail: tag + "fail:" + address,
		mail: tag + "mail",
	}
}

func (s *Store) ipKey(ip, what string) string { return s.prefix + "{ip:" + ip + "}:" + what }

func (s *Store) projectKey(project string) string { return s.prefix + "{p:" + project + "}:mails" }

// unavailable wraps a failed Redis call. The message stays stable; the
// cause (never a code: only hashes reach Redis) is for the log.
func unavailable(err error) error { return authd.Unavailable("redis", err) }

// badReply reports a script reply this package does not understand: a bug,
// not an outage.
func badReply(v any) error {
	return &authd.Error{Code: authd.EINTERNAL, Message: "redis: unexpected script reply", Err: fmt.Errorf("reply %T", v)}
}

// rateArgs turns r into the scripts' (t, n): the emission interval in
// microseconds and the burst. t == 0 turns the limit off.
func rateArgs(r authd.Rate) (t, n int64) {
	if r.Off() {
		return 0, 0
	}
	t = r.Period.Microseconds() / int64(r.N)
	if t < 1 {
		t = 1
	}
	return t, int64(r.N)
}

// limited is the refusal of a limit. RetryAfter is rounded up to whole
// seconds (Retry-After counts seconds): a client that waits that long is let
// through.
func limited(limit string, waitMicros int64) error {
	return authd.RateLimited(limit, time.Duration(waitMicros)*time.Microsecond)
}

// CheckEviction reads the server's maxmemory-policy; ok is true only for
// "noeviction": under any other policy Redis may drop limits and codes when
// full. Managed Redis services often refuse CONFIG; then the policy is read
// from INFO memory, and if that is refused too, policy is "" and ok false
// with a nil error: the caller should warn, not fail. Errors: EUNAVAILABLE.
func (s *Store) CheckEviction(ctx context.Context) (policy string, ok bool, err error) {
	cfg, err := s.client.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil {
		if p, found := cfg["maxmemory-policy"]; found {
			return p, p == "noeviction", nil
		}
	} else if !isServerError(err) {
		return "", false, unavailable(err)
	}
	info, err := s.client.Info(ctx, "memory").Result()
	if err != nil {
		if isServerError(err) {
			return "", false, nil
		}
		return "", false, unavailable(err)
	}
	p := infoField(info, "maxmemory_policy")
	return p, p == "noeviction", nil
}

// isServerError reports whether err is a reply from Redis (the server
// refused the command) rather than a failure to reach it.
func isServerError(err error) bool {
	var rerr goredis.Error
	return errors.As(err, &rerr)
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
