package authd

import (
	"context"
	"encoding/hex"
	"hash/fnv"
	"io"
	"time"
)

// Delivery statuses, as GET /api/v2/auth/deliveries/{id} reports them.
const (
	DeliveryQueued     = "queued"     // waiting for a worker, or being sent
	DeliveryRetrying   = "retrying"   // a temporary failure; NextAttempt says when the next try is
	DeliverySent       = "sent"       // accepted by the SMTP server
	DeliveryFailed     = "failed"     // refused for good (5xx), or the code expired before it could be sent
	DeliverySuperseded = "superseded" // not sent: a newer code replaced this one (or it was used)
)

// MailJob is a verification mail as the queue holds it: everything a worker
// needs to decide whether to send, in the clear, and the message itself
// (with its code) sealed by a JobSealer. It is written in the same atomic
// step as its code (IssueRequest.Job).
type MailJob struct {
	// DeliveryID is NewDeliveryID's: 128 bits, hex, the client's handle on
	// the delivery status; random but for the 6 that name the address's
	// partition.
	DeliveryID string
	// Address, Project and CodeID name the code, so a worker can tell
	// whether it is still the live one.
	Address Address
	Project string
	CodeID  string
	// ExpiresAt is the code's expiry: no attempt is made after it.
	ExpiresAt time.Time
	// ReplaceableAt is when the resend cooldown lets a newer code replace
	// this one: before it the currency check can be skipped.
	ReplaceableAt time.Time
	// Sealed is the Message, encrypted and bound to DeliveryID.
	Sealed []byte
}

// ClaimedJob is a MailJob a consumer has claimed from the MailQueue.
type ClaimedJob struct {
	MailJob
	// Ref is the queue's handle on the job (for Redis, the stream and the
	// entry id); opaque to callers.
	Ref string
	// QueuedAt is when the job was queued, by the queue's clock.
	QueuedAt time.Time
	// Checked is set when Claim looked up whether the job's code was still
	// the live code of its address and project, as CodeStore.IsCurrent
	// would at Claim's now, and Live is what it found. Claim looks for
	// every job whose code its cooldown no longer protects (now at or past
	// ReplaceableAt), all in one round trip, so that the worker need not
	// ask once per mail; for the others a newer code cannot exist yet. A
	// failed look leaves Checked false: the worker asks itself.
	Checked, Live bool
}

// Delivery is the status of one mail.
type Delivery struct {
	Status      string
	Attempts    int       // send attempts made so far
	NextAttempt time.Time // when Status is DeliveryRetrying
	ExpiresAt   time.Time // the code's expiry: the status is kept until then
}

// MailQueue is the durable queue of mail jobs that lives beside the codes
// (IssueCode enqueues). Consumers claim jobs; a claim not extended within
// the claim timeout lapses and another consumer may take the job (its
// first consumer died). Implementations: internal/redis, internal/inmem.
type MailQueue interface {
	// Claim claims up to n jobs for consumer (a store split over shards may
	// take up to one more per partition): jobs never claimed first, then
	// jobs whose claim was made or renewed claimTimeout ago or more. It does
	// not block: an empty result means nothing is ready. Claims age by now,
	// the caller's clock. It reports whether the codes of the jobs past
	// their ReplaceableAt are still live (ClaimedJob.Checked).
	//
	// Errors: EUNAVAILABLE.
	Claim(ctx context.Context, consumer string, n int, claimTimeout time.Duration, now time.Time) ([]ClaimedJob, error)

	// Extend renews consumer's claims on jobs, so that a long send or a
	// wait before a retry does not let another consumer take them.
	//
	// Errors: EUNAVAILABLE.
	Extend(ctx context.Context, consumer string, jobs []ClaimedJob, now time.Time) error

	// Release gives up consumer's claims on jobs (a consumer shutting
	// down): any consumer may claim them at once, as lapsed claims,
	// instead of after the claim timeout.
	//
	// Errors: EUNAVAILABLE.
	Release(ctx context.Context, consumer string, jobs []ClaimedJob) error

	// Retrying records a temporary failure: the job stays queued and
	// claimed, its status says when the next attempt is.
	//
	// Errors: EUNAVAILABLE.
	Retrying(ctx context.Context, job ClaimedJob, attempts int, next, now time.Time) error

	// Finish records the job's final status (sent, failed or superseded)
	// and removes the job from the queue.
	//
	// Errors: EUNAVAILABLE.
	Finish(ctx context.Context, job ClaimedJob, status string, attempts int, now time.Time) error

	// FinishAll is Finish for many jobs in one step: what the workers of
	// one instance finish at the same time shares a round trip. On an
	// error some may be finished and some not: finishing one again is
	// harmless (its status is written only while it is queued).
	//
	// Errors: EUNAVAILABLE.
	FinishAll(ctx context.Context, jobs []FinishedJob, now time.Time) error

	// Delivery returns the status of the mail named id while its code
	// lives.
	//
	// Errors: ENOTFOUND (unknown, or its code has expired), EUNAVAILABLE.
	Delivery(ctx context.Context, id string, now time.Time) (Delivery, error)

	// OldestQueued returns when the oldest job still in the queue was
	// queued, by the queue's clock: a job is in it until Finish, whether
	// waiting, in flight or waiting to retry. The zero time means the
	// queue is empty. For the queue age metric: unlike the wait of the
	// last job claimed, it grows while nothing is being claimed.
	//
	// Errors: EUNAVAILABLE.
	OldestQueued(ctx context.Context) (time.Time, error)
}

// FinishedJob is a job for FinishAll with its final status (sent, failed
// or superseded) and the attempts made.
type FinishedJob struct {
	Job      ClaimedJob
	Status   string
	Attempts int
}

// Partitions is how many parts the code store may split its state into:
// everything about one address (its codes, budgets, mail jobs and their
// delivery statuses) lives in the part Partition names, so that a sharded
// store (Redis Cluster) changes it in one atomic step on one shard. A
// delivery id carries its part, so that its status is found from the id
// alone.
const Partitions = 64

// Partition returns the part of a mailbox key (Address.Mailbox).
func Partition(address string) int {
	h := fnv.New32a()
	io.WriteString(h, address)
	return int(h.Sum32() % Partitions)
}

// NewDeliveryID returns a delivery id for a mail of partition p: 128 bits
// read from r, hex-encoded, the last six of them replaced by p. The other
// 122 are random and nothing in the id derives from the address but its
// part, which is one of 64 values of a keyed hash.
func NewDeliveryID(r io.Reader, p int) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	b[15] = b[15]&^(Partitions-1) | byte(p&(Partitions-1))
	return hex.EncodeToString(b[:]), nil
}

// DeliveryPartition returns the partition a delivery id (NewDeliveryID's)
// names; ok is false when id is not 32 lowercase hex digits.
func DeliveryPartition(id string) (p int, ok bool) {
	if !validDeliveryID(id) {
		return 0, false
	}
	var last [1]byte
	hex.Decode(last[:], []byte(id[30:]))
	return int(last[0] & (Partitions - 1)), true
}

// validDeliveryID reports whether id has NewID's form: 32 lowercase hex
// digits. Anything else is refused before it reaches a store key.
func validDeliveryID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
