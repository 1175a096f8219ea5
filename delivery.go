package authd

import (
	"context"
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
	// DeliveryID is 128 random bits, hex: the client's handle on the
	// delivery status. Never derived from the address.
	DeliveryID string
	// Address (an AddressKey), Project and CodeID name the code, so a
	// worker can tell whether it is still the live one.
	Address string
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
	// Claim claims about n jobs for consumer (up to n per partition of the
	// queue: Redis reads its streams in one go): jobs never claimed first,
	// then jobs whose claim is older than claimTimeout. It does not block:
	// an empty result means nothing is ready. now is the caller's clock
	// (Redis ages claims by its own).
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

// JobSealer encrypts a Message for the queue, bound to its delivery id: a
// job's payload cannot be opened under another id. Implementation:
// internal/mailer (XChaCha20-Poly1305 with Keys.Mail).
type JobSealer interface {
	// Seal returns m encrypted. Errors: EINTERNAL.
	Seal(deliveryID string, m Message) ([]byte, error)
	// Open returns the message sealed under deliveryID. Errors: EINTERNAL
	// when sealed was not made by Seal with this key and id.
	Open(deliveryID string, sealed []byte) (Message, error)
}

// Delivery returns the status of the mail named id.
//
// Errors: ENOTFOUND (also for an id that is not 32 hex digits), EUNAVAILABLE.
func (s *Service) Delivery(ctx context.Context, id string) (Delivery, error) {
	if !validDeliveryID(id) || s.Queue == nil {
		return Delivery{}, errNoDelivery
	}
	return s.Queue.Delivery(ctx, id, s.now())
}

var errNoDelivery = &Error{Code: ENOTFOUND, Message: "Delivery not found"}

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
