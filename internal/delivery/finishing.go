package delivery

import (
	"slices"
	"sync"

	"github.com/authd/authd"
)

// finisher writes the final statuses of the jobs the workers finish,
// many to a FinishAll, off the workers' time: a worker hands its job over
// and takes the next. A job finished while no write is under way is
// written at once, alone (nothing waits at low load); the jobs finished
// while one is under way go together in the next. A job stays held
// (Close does not release it) until its write is done.
type finisher struct {
	write func([]authd.FinishedJob) error
	spawn func(func()) // runs a round: the Worker's WaitGroup, which Close waits for

	mu      sync.Mutex
	writing bool
	pending []finishing
}

// finishing is one job waiting for its write, and what to do after.
type finishing struct {
	job  authd.FinishedJob
	done func(error)
}

// maxFinishes bounds one write's jobs.
const maxFinishes = 256

// finish queues job's write; done runs once it is written (or failed).
func (f *finisher) finish(job authd.FinishedJob, done func(error)) {
	f.mu.Lock()
	f.pending = append(f.pending, finishing{job: job, done: done})
	lead := !f.writing
	f.writing = true
	f.mu.Unlock()
	if lead {
		f.spawn(f.rounds)
	}
}

// rounds writes what is pending, batch after batch, until nothing is.
func (f *finisher) rounds() {
	for {
		f.mu.Lock()
		if len(f.pending) == 0 {
			f.writing = false
			f.mu.Unlock()
			return
		}
		n := min(len(f.pending), maxFinishes)
		batch := slices.Clone(f.pending[:n])
		f.pending = slices.Delete(f.pending, 0, n)
		f.mu.Unlock()
		jobs := make([]authd.FinishedJob, len(batch))
		for i, b := range batch {
			jobs[i] = b.job
		}
		err := f.write(jobs)
		for _, b := range batch {
			b.done(err)
		}
	}
}
