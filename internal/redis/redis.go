// Package redis implements authd.CodeStore on Redis: codes, resend
// cooldowns, every GCRA limit of DESIGN.md §2, and the mail queue beside
// them, in Lua scripts (lib.lua holds their shared rules; internal/inmem
// mirrors them function for function).
//
// Key layout (P is Options.Prefix; B is authd.Partition of the address
// key, one of 64, so that everything of an address shares one hash slot):
//
//	P{a:B}:code:<project>:<address>  hash: id, h (code hash), exp, att
//	P{a:B}:cool:<project>:<address>  end of the resend cooldown
//	P{a:B}:sent:<address>            GCRA: codes per address
//	P{a:B}:fail:<address>            GCRA: failures per address
//	P{a:B}:mail                      stream: the partition's mail jobs (queue.go)
//	P{a:B}:claims                    sorted set: entry id → when its claim was made or renewed
//	P{a:B}:dlv:<delivery id>         hash: a delivery's status, until its code expires
//	P{ip:<ip>}:send, P{ip:<ip>}:verify  GCRA: per client IP
//	P{p:<project>}:mails             GCRA: mails per project
//
// A delivery id carries its partition (authd.NewDeliveryID), so that its
// status is found from the id alone. Project IDs are expected valid
// (authd.ValidProjectID) and address keys to be authd.AddressKey's:
// neither may contain ':' or braces.
//
// GCRA state is the bucket's theoretical arrival time. All times are the
// caller's (the requests' Now, the queue calls' now), never the server's;
// TTLs only reclaim memory.
//
// On a single Redis or Sentinel, IssueCode and ConsumeCode are one script
// each: one round trip. On a Redis Cluster (or Ring; Options.Split forces
// it for tests) one script may not span hash slots, and the client-IP and
// project limits live in other slots than the address's: they are taken
// first, then the address's script runs — the same script, given no
// limits — and when it refuses they are given back (split.go). The
// address's state is never undone: its script does everything or nothing.
// With Options.WaitReplicas, IssueCode's WAIT rides in the address
// script's pipeline, on the node that runs it (wait.go).
//
// How fast a down Redis is reported is the client's business: with
// go-redis's defaults (5 dials, 3 retries) it takes about 1.7 s; Open sets
// one retry (on a cluster, the cluster client's own) and one dial, a few
// milliseconds. How fast a failover is followed is the client's too: a
// Sentinel client is told of the new master by the Sentinels; a cluster
// client from Open reloads its slot map when a node fails (topology.go).
package redis

import (
	"fmt"
	"strconv"
	"sync/atomic"
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

	// Split forces the Redis Cluster path (split.go), which the store
	// otherwise takes only on a Cluster or Ring client: the limits outside
	// the address's slot are taken first, in one pipeline, and the
	// address's script runs only when they allow. Tests set it to run the
	// contract suites through that path on a single Redis.
	Split bool

	// Cluster makes Open connect to a Redis Cluster (more nodes as addr
	// query parameters of the URL). New ignores it: the client says.
	Cluster bool

	// WaitReplicas, when > 0, makes IssueCode wait until that many
	// replicas have acknowledged the address's write (the code, its mail
	// job and status) before it answers: Redis WAIT on the connection and
	// node that took the write, pipelined with it (wait.go). Fewer within
	// WaitTimeout is EUNAVAILABLE, nothing undone. 0: no WAIT.
	WaitReplicas int

	// PoolSize bounds Open's client's connections (per node of a
	// cluster), unless the URL sets pool_size itself, which wins. 0:
	// go-redis's default, 10 per CPU. New ignores it: the client says.
	PoolSize int

	// WaitTimeout bounds that wait. Default DefaultWaitTimeout; it should
	// stay well below the client's read timeout.
	WaitTimeout time.Duration
}

// DefaultWaitTimeout is Options.WaitTimeout's default: on a LAN a healthy
// replica acknowledges in well under a millisecond, so a replica that has
// not in 100 ms is not keeping up, and a send-code waits no longer than
// that for it.
const DefaultWaitTimeout = 100 * time.Millisecond

// Store is the Redis CodeStore.
type Store struct {
	client goredis.UniversalClient
	prefix string
	split  bool
	claims claimState // when Claim looks for lapsed claims (queue.go)
	queue  []string   // each partition's stream and claims set, in turn

	waitReplicas int // Options.WaitReplicas (wait.go)
	waitTimeout  time.Duration
	waitShort    atomic.Int64 // IssueCode's writes too few replicas acknowledged

	// onFault asks a cluster client for its slot map again (topology.go)
	// after a failure met outside the client's hooks: WAIT's pipeline runs
	// on a node's own client. Nil: nothing to ask.
	onFault func()
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
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	s := &Store{client: client, prefix: opts.Prefix, split: split,
		waitReplicas: max(opts.WaitReplicas, 0), waitTimeout: opts.WaitTimeout}
	for p := range authd.Partitions {
		s.queue = append(s.queue, s.tag(p)+"mail", claimsKey(s.tag(p)))
	}
	return s
}

// tag is the start of every key of partition p: its hash tag.
func (s *Store) tag(p int) string { return s.prefix + "{a:" + strconv.Itoa(p) + "}:" }

// addressKeys are the keys of one address, all under its partition's hash
// tag.
type addressKeys struct{ tag, code, cool, sent, fail, mail string }

// keysOf returns the keys of an address (code and cooldown of project),
// under its mailbox's partition: the budgets are the mailbox's, which the
// inbox's aliases share, and the code and the budgets meet in one script.
func (s *Store) keysOf(a authd.Address, project string) addressKeys {
	tag := s.tag(a.Partition())
	return addressKeys{
		tag:  tag,
		code: tag + "code:" + project + ":" + a.Key,
		cool: tag + "cool:" + project + ":" + a.Key,
		sent: tag + "sent:" + a.Mailbox,
		fail: tag + "fail:" + a.Mailbox,
		mail: tag + "mail",
	}
}

func (s *Store) ipKey(ip, what string) string { return s.prefix + "{ip:" + ip + "}:" + what }

// totalKey is the limit of mails in total, all projects and addresses.
func (s *Store) totalKey() string { return s.prefix + "{g}:mails" }

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
