package inmem

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/authd/authd"
)

// The in-memory authd.MailQueue, internal/redis's queue scripts rule for
// rule (see the package comment): IssueCode queues a code's job under the
// same mutex as the code, as issue.lua does; claims age by the callers'
// clock (the now of Claim and Extend), as claim.lua's claims sets do. One
// list stands for Redis's 64 streams, a job's consumer and claim time for
// the group's pending list and the claims set.

var _ authd.MailQueue = (*CodeStore)(nil)

// memJob is one queued job: a stream entry.
type memJob struct {
	job      authd.MailJob
	ref      string
	queuedAt time.Time
	// consumer holds the claim; "" until the job is first claimed (a new
	// entry). claimedAt is when the claim was made or last renewed; the
	// zero time after a release stands for claim.lua's -inf.
	consumer  string
	claimedAt time.Time
}

// memQueue is the CodeStore's queue state; the CodeStore's mutex guards it.
type memQueue struct {
	jobs     []*memJob // in queue order
	seq      uint64
	statuses map[string]authd.Delivery // by delivery id: P{a:B}:dlv:<id>
}

// statusSet is status_set: a delivery's status, kept until its code
// expires (exp), for as long as the code lives and no longer.
func (s *CodeStore) statusSet(id string, now, exp time.Time, d authd.Delivery) {
	if !exp.After(now) {
		delete(s.queue.statuses, id)
		return
	}
	if s.queue.statuses == nil {
		s.queue.statuses = make(map[string]authd.Delivery)
	}
	d.ExpiresAt = exp
	s.queue.statuses[id] = d
}

// enqueueJob is enqueue_job: it adds a code's mail job to the queue and
// writes its status "queued".
func (s *CodeStore) enqueueJob(j *authd.MailJob, now time.Time) {
	q := &s.queue
	q.seq++
	job := *j
	job.Sealed = slices.Clone(j.Sealed)
	q.jobs = append(q.jobs, &memJob{job: job, ref: strconv.FormatUint(q.seq, 10), queuedAt: now})
	s.statusSet(j.DeliveryID, now, j.ExpiresAt, authd.Delivery{Status: authd.DeliveryQueued})
}

// jobQueued is job_queued: the job named ref is still in the queue. A
// job finished (by another consumer that took it over) or erased is not,
// and its status is no longer any consumer's to write.
func (s *CodeStore) jobQueued(ref string) *memJob {
	for _, j := range s.queue.jobs {
		if j.ref == ref {
			return j
		}
	}
	return nil
}

// claimedBy is claimed_by: consumer holds the claim on the job named ref.
func (s *CodeStore) claimedBy(ref, consumer string) *memJob {
	if j := s.jobQueued(ref); j != nil && j.consumer == consumer {
		return j
	}
	return nil
}

// jobRemove is job_remove: a finished job leaves the queue, its claim
// with it. It reports whether the job was still queued.
func (s *CodeStore) jobRemove(ref string) bool {
	n := len(s.queue.jobs)
	s.queue.jobs = slices.DeleteFunc(s.queue.jobs, func(j *memJob) bool { return j.ref == ref })
	return len(s.queue.jobs) < n
}

// sweepQueue drops the statuses of expired codes (the status keys' TTL),
// and jobs whose code expired long ago and that no worker took (a store
// without workers): a worker would only have dropped them (mu held).
func (s *CodeStore) sweepQueue(now time.Time) {
	for id, d := range s.queue.statuses {
		if !now.Before(d.ExpiresAt) {
			delete(s.queue.statuses, id)
		}
	}
	s.queue.jobs = slices.DeleteFunc(s.queue.jobs, func(j *memJob) bool {
		return j.consumer == "" && !now.Before(j.job.ExpiresAt.Add(SweepInterval))
	})
}

// claim hands j to consumer at now (claim.lua's ZADD claims now id).
func claim(j *memJob, consumer string, now time.Time) authd.ClaimedJob {
	j.consumer, j.claimedAt = consumer, now
	job := j.job
	job.Sealed = slices.Clone(job.Sealed)
	return authd.ClaimedJob{MailJob: job, Ref: j.ref, QueuedAt: j.queuedAt}
}

// Claim implements authd.MailQueue: claim.lua. Jobs never claimed first
// (claim_new), then claims not renewed for claimTimeout or released
// (claim_lapsed), up to n in all. (The Redis store skips the lapsed ones
// while none can have lapsed, and reads up to n new ones per stream; one
// process has one list and nothing to save.)
func (s *CodeStore) Claim(ctx context.Context, consumer string, n int, claimTimeout time.Duration, now time.Time) ([]authd.ClaimedJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.claim(consumer, n, claimTimeout, now)
	// The codes the cooldown no longer protects: looked up, as the Redis
	// store does after its claim script.
	for i := range out {
		if j := &out[i]; !now.Before(j.ReplaceableAt) {
			j.Checked, j.Live = true, s.isCurrent(j.Address, j.Project, j.CodeID, now)
		}
	}
	return out, nil
}

// claim is Claim's claim.lua, under s.mu.
func (s *CodeStore) claim(consumer string, n int, claimTimeout time.Duration, now time.Time) []authd.ClaimedJob {
	var out []authd.ClaimedJob
	for _, j := range s.queue.jobs {
		if len(out) >= n {
			return out
		}
		if j.consumer == "" {
			out = append(out, claim(j, consumer, now))
		}
	}
	// Lapsed claims, the longest lapsed first (ZRANGEBYSCORE).
	var lapsed []*memJob
	for _, j := range s.queue.jobs {
		if j.consumer != "" && !j.claimedAt.After(now.Add(-claimTimeout)) {
			lapsed = append(lapsed, j)
		}
	}
	slices.SortStableFunc(lapsed, func(a, b *memJob) int { return a.claimedAt.Compare(b.claimedAt) })
	for _, j := range lapsed {
		if len(out) >= n {
			break
		}
		out = append(out, claim(j, consumer, now))
	}
	return out
}

// Extend implements authd.MailQueue: extend.lua. A claim another consumer
// has taken over stays theirs.
func (s *CodeStore) Extend(ctx context.Context, consumer string, jobs []authd.ClaimedJob, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cj := range jobs {
		if j := s.claimedBy(cj.Ref, consumer); j != nil {
			j.claimedAt = now
		}
	}
	return nil
}

// Release implements authd.MailQueue: release.lua. The jobs are any
// consumer's to claim at once, as lapsed claims.
func (s *CodeStore) Release(ctx context.Context, consumer string, jobs []authd.ClaimedJob) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cj := range jobs {
		if j := s.claimedBy(cj.Ref, consumer); j != nil {
			j.claimedAt = time.Time{}
		}
	}
	return nil
}

// Retrying implements authd.MailQueue: status.lua. The status is written
// only while the job is queued.
func (s *CodeStore) Retrying(ctx context.Context, job authd.ClaimedJob, attempts int, next, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if job.DeliveryID == "" || s.jobQueued(job.Ref) == nil {
		return nil
	}
	s.statusSet(job.DeliveryID, now, job.ExpiresAt, authd.Delivery{Status: authd.DeliveryRetrying, Attempts: attempts, NextAttempt: next})
	return nil
}

// Finish implements authd.MailQueue: finish.lua, the job out of the
// queue, then its final status if it was still queued.
func (s *CodeStore) Finish(ctx context.Context, job authd.ClaimedJob, status string, attempts int, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobRemove(job.Ref) && job.DeliveryID != "" {
		s.statusSet(job.DeliveryID, now, job.ExpiresAt, authd.Delivery{Status: status, Attempts: attempts})
	}
	return nil
}

// FinishAll implements authd.MailQueue: Finish for each job.
func (s *CodeStore) FinishAll(ctx context.Context, jobs []authd.FinishedJob, now time.Time) error {
	for _, f := range jobs {
		if err := s.Finish(ctx, f.Job, f.Status, f.Attempts, now); err != nil {
			return err
		}
	}
	return nil
}

// Delivery implements authd.MailQueue. An id that is not a delivery id
// (authd.DeliveryPartition) has no status, as on Redis.
func (s *CodeStore) Delivery(ctx context.Context, id string, now time.Time) (authd.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.queue.statuses[id]
	if _, valid := authd.DeliveryPartition(id); !valid || !ok || !now.Before(d.ExpiresAt) {
		return authd.Delivery{}, authd.ErrNoDelivery
	}
	return d, nil
}

// QueueLen returns how many jobs are queued, claimed or not.
func (s *CodeStore) QueueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue.jobs)
}

// OldestQueued implements authd.MailQueue: jobs stay in queue order, so
// the first is the oldest.
func (s *CodeStore) OldestQueued(ctx context.Context) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue.jobs) == 0 {
		return time.Time{}, nil
	}
	return s.queue.jobs[0].queuedAt, nil
}

// eraseJobs removes address's jobs, claimed or not, with their claims and
// delivery statuses (mu held), as erase.go's eraseJobs does on Redis. A
// worker still holding one of them finds it gone: Extend ignores it,
// Retrying and Finish write no status, and its retries check the code,
// which the erasure deleted.
func (s *CodeStore) eraseJobs(address string) {
	s.queue.jobs = slices.DeleteFunc(s.queue.jobs, func(j *memJob) bool {
		if j.job.Address.Key != address {
			return false
		}
		delete(s.queue.statuses, j.job.DeliveryID)
		return true
	})
}
