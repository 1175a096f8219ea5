package inmem

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/authd/authd"
)

// The in-memory authd.MailQueue: IssueCode queues a code's job under the
// same mutex as the code, as the Redis script does. Claims age by the
// callers' clock (the now of Claim and Extend).

var _ authd.MailQueue = (*CodeStore)(nil)

// memJob is one queued job.
type memJob struct {
	job       authd.MailJob
	ref       string
	queuedAt  time.Time
	consumer  string    // "" while unclaimed
	claimedAt time.Time // the claim's last renewal
}

// memQueue is the CodeStore's queue state; the CodeStore's mutex guards it.
type memQueue struct {
	jobs     []*memJob // in queue order
	seq      uint64
	statuses map[string]authd.Delivery // by delivery id
}

// enqueue adds j (IssueCode, mu held).
func (s *CodeStore) enqueue(j *authd.MailJob, now time.Time) {
	q := &s.queue
	if q.statuses == nil {
		q.statuses = make(map[string]authd.Delivery)
	}
	q.seq++
	job := *j
	job.Sealed = slices.Clone(j.Sealed)
	q.jobs = append(q.jobs, &memJob{job: job, ref: strconv.FormatUint(q.seq, 10), queuedAt: now})
	q.statuses[j.DeliveryID] = authd.Delivery{Status: authd.DeliveryQueued, ExpiresAt: j.ExpiresAt}
}

// sweepQueue drops the statuses of expired codes, and jobs whose code
// expired long ago and that no worker took (a store without workers):
// a worker would only have dropped them (mu held).
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

// Claim implements authd.MailQueue.
func (s *CodeStore) Claim(ctx context.Context, consumer string, n int, claimTimeout time.Duration, now time.Time) ([]authd.ClaimedJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []authd.ClaimedJob
	take := func(j *memJob) {
		j.consumer, j.claimedAt = consumer, now
		job := j.job
		job.Sealed = slices.Clone(job.Sealed)
		out = append(out, authd.ClaimedJob{MailJob: job, Ref: j.ref, QueuedAt: j.queuedAt})
	}
	// New jobs first, then lapsed claims, as the Redis queue does.
	for _, j := range s.queue.jobs {
		if len(out) == n {
			return out, nil
		}
		if j.consumer == "" {
			take(j)
		}
	}
	for _, j := range s.queue.jobs {
		if len(out) == n {
			break
		}
		if j.consumer != "" && now.Sub(j.claimedAt) >= claimTimeout {
			take(j)
		}
	}
	return out, nil
}

func (s *CodeStore) findJob(ref string) (int, *memJob) {
	for i, j := range s.queue.jobs {
		if j.ref == ref {
			return i, j
		}
	}
	return -1, nil
}

// Extend implements authd.MailQueue. A claim another consumer has taken
// over stays theirs.
func (s *CodeStore) Extend(ctx context.Context, consumer string, jobs []authd.ClaimedJob, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cj := range jobs {
		if _, j := s.findJob(cj.Ref); j != nil && j.consumer == consumer {
			j.claimedAt = now
		}
	}
	return nil
}

// Release implements authd.MailQueue: the jobs become unclaimed.
func (s *CodeStore) Release(ctx context.Context, consumer string, jobs []authd.ClaimedJob) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cj := range jobs {
		if _, j := s.findJob(cj.Ref); j != nil && j.consumer == consumer {
			j.consumer = ""
		}
	}
	return nil
}

// Retrying implements authd.MailQueue.
func (s *CodeStore) Retrying(ctx context.Context, job authd.ClaimedJob, attempts int, next, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStatus(job, authd.Delivery{Status: authd.DeliveryRetrying, Attempts: attempts, NextAttempt: next}, now)
	return nil
}

// Finish implements authd.MailQueue.
func (s *CodeStore) Finish(ctx context.Context, job authd.ClaimedJob, status string, attempts int, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStatus(job, authd.Delivery{Status: status, Attempts: attempts}, now)
	if i, _ := s.findJob(job.Ref); i >= 0 {
		s.queue.jobs = slices.Delete(s.queue.jobs, i, i+1)
	}
	return nil
}

func (s *CodeStore) setStatus(job authd.ClaimedJob, d authd.Delivery, now time.Time) {
	if job.DeliveryID == "" || !now.Before(job.ExpiresAt) {
		delete(s.queue.statuses, job.DeliveryID)
		return
	}
	if s.queue.statuses == nil {
		s.queue.statuses = make(map[string]authd.Delivery)
	}
	d.ExpiresAt = job.ExpiresAt
	s.queue.statuses[job.DeliveryID] = d
}

// Delivery implements authd.MailQueue.
func (s *CodeStore) Delivery(ctx context.Context, id string, now time.Time) (authd.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.queue.statuses[id]
	if !ok || !now.Before(d.ExpiresAt) {
		return authd.Delivery{}, &authd.Error{Code: authd.ENOTFOUND, Message: "Delivery not found"}
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

// eraseJobs removes address's jobs, claimed or not, and their delivery
// statuses (mu held). A worker still holding one of them finds it gone:
// Finish and Extend ignore it, and its retries check the code, which the
// erasure deleted.
func (s *CodeStore) eraseJobs(address string) {
	s.queue.jobs = slices.DeleteFunc(s.queue.jobs, func(j *memJob) bool {
		if j.job.Address != address {
			return false
		}
		delete(s.queue.statuses, j.job.DeliveryID)
		return true
	})
}
