package postgres

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd"
)

// Concurrent verifications share their upserts. A verification that finds
// fewer than maxStatements upserts in flight runs its own at once, the
// single statement, with its own context: at low load nothing changes and
// nothing waits. Past that, the verifications arriving while the
// statements run queue up, and the first statement to end takes them all
// (up to maxBatch) into one statement, upsertBatch: the wait is what they
// would have waited for a connection anyway, and PostgreSQL does the work
// of many rows in one statement's cost.
//
// A batch holds each address once (two projects may verify one address in
// the same instant: ON CONFLICT DO UPDATE may not touch a row twice in one
// statement), its latest time; the rows come back by address, not in any
// order. When a batch fails, each of its addresses is tried alone, with
// its own request's context, so that one bad row or a lost deadlock costs
// no one else their verification; an address whose own try fails answers
// its error, and the flow gives the code back as it always has.

const (
	// maxStatements is how many upserts run at once before they are
	// batched: PostgreSQL's CPU, not the pool, is what a verify waits on.
	maxStatements = 4
	// maxBatch bounds one statement's rows.
	maxBatch = 256
)

// upsertBatch is upsertVerified for many addresses: $1 the lowercased
// addresses (each once), $2 their times, $3 a new id each. Each row
// returned names its input address first.
const upsertBatch = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::timestamp[], $3::text[]) AS i(key, at, new_id)
), oldest AS (
    SELECT DISTINCT ON (lower(u.email)) lower(u.email) AS key, u.id
    FROM auth_users u
    WHERE lower(u.email) = ANY($1::text[])
    ORDER BY lower(u.email), u.created_at, u.id
), updated AS (
    UPDATE auth_users u SET last_verified_at = i.at
    FROM oldest o JOIN input i ON i.key = o.key
    WHERE u.id = o.id
    RETURNING i.key, u.id, u.email, u.created_at, u.last_verified_at
), inserted AS (
    INSERT INTO auth_users (id, email, created_at, last_verified_at)
    SELECT i.new_id::uuid, i.key, i.at, i.at FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM oldest o WHERE o.key = i.key)
    ORDER BY i.key
    ON CONFLICT (email) DO UPDATE SET last_verified_at = EXCLUDED.last_verified_at
    RETURNING email AS key, id, email, created_at, last_verified_at
)
SELECT key, id, email, created_at, last_verified_at FROM updated
UNION ALL
SELECT key, id, email, created_at, last_verified_at FROM inserted`

// upsert is one verification waiting for its row.
type upsert struct {
	ctx   context.Context
	email string // lowercased
	at    time.Time
	done  chan upsertResult // buffered: the batch never waits for its reader
}

type upsertResult struct {
	user authd.User
	err  error
}

// batcher queues the upserts that find maxStatements in flight.
type batcher struct {
	mu      sync.Mutex
	running int
	pending []*upsert
	shared  atomic.Int64 // statements that answered more than one address
}

// upsertShared is UpsertVerified's way through the batcher.
func (s *Store) upsertShared(ctx context.Context, email string, at time.Time) (authd.User, error) {
	b := &s.batch
	b.mu.Lock()
	if b.running < maxStatements && len(b.pending) == 0 {
		b.running++
		b.mu.Unlock()
		u, err := s.upsertOne(ctx, email, at)
		s.statementDone()
		return u, err
	}
	up := &upsert{ctx: ctx, email: email, at: at, done: make(chan upsertResult, 1)}
	b.pending = append(b.pending, up)
	b.mu.Unlock()
	select {
	case r := <-up.done:
		return r.user, r.err
	case <-ctx.Done():
		// Still queued: it leaves the queue, nothing written. Taken into a
		// batch already: the batch may still write the row, as a statement
		// cut after its commit would have. Either way the flow answers 503
		// and gives the code back.
		b.mu.Lock()
		if i := slices.Index(b.pending, up); i >= 0 {
			b.pending = slices.Delete(b.pending, i, i+1)
		}
		b.mu.Unlock()
		return authd.User{}, unavailable(context.Cause(ctx))
	}
}

// statementDone ends a statement's turn: the upserts queued meanwhile go
// as the next batch, on the turn it hands over.
func (s *Store) statementDone() {
	b := &s.batch
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	n := min(len(b.pending), maxBatch)
	batch := slices.Clone(b.pending[:n])
	b.pending = slices.Delete(b.pending, 0, n)
	b.mu.Unlock()
	go func() {
		s.runBatch(batch)
		s.statementDone()
	}()
}

// runBatch upserts batch's addresses in one statement and answers each
// upsert; when the statement fails, each address alone.
func (s *Store) runBatch(batch []*upsert) {
	byEmail := make(map[string][]*upsert, len(batch))
	var emails []string
	for _, up := range batch {
		if _, ok := byEmail[up.email]; !ok {
			emails = append(emails, up.email)
		}
		byEmail[up.email] = append(byEmail[up.email], up)
	}
	// The same order in every batch, so that two batches of two instances
	// lock the rows they share in the same order.
	slices.Sort(emails)
	if len(emails) == 1 {
		s.upsertAlone(byEmail[emails[0]])
		return
	}
	ats := make([]time.Time, len(emails))
	ids := make([]string, len(emails))
	for i, e := range emails {
		ats[i] = latest(byEmail[e]).UTC()
		ids[i] = uuid.NewString()
	}
	ctx, cancel := batchContext(batch)
	defer cancel()
	users, err := s.upsertMany(ctx, emails, ats, ids)
	if err == nil {
		s.batch.shared.Add(1)
	}
	var wg sync.WaitGroup
	for _, e := range emails {
		ups := byEmail[e]
		u, ok := users[e]
		if err != nil || !ok {
			wg.Go(func() { s.upsertAlone(ups) })
			continue
		}
		for _, up := range ups {
			up.done <- upsertResult{user: u}
		}
	}
	wg.Wait()
}

// upsertAlone upserts one address for its waiting upserts, the single
// statement, and answers them all.
func (s *Store) upsertAlone(ups []*upsert) {
	ctx, cancel := batchContext(ups)
	defer cancel()
	u, err := s.upsertOne(ctx, ups[0].email, latest(ups))
	for _, up := range ups {
		up.done <- upsertResult{user: u, err: err}
	}
}

// latest is the latest time of ups, all of one address: the row's
// last_verified_at.
func latest(ups []*upsert) time.Time {
	at := ups[0].at
	for _, up := range ups[1:] {
		if up.at.After(at) {
			at = up.at
		}
	}
	return at
}

// batchContext is a batch's context: no one request's cancellation stops
// it, and it ends at the latest of their deadlines (5 s without one).
func batchContext(batch []*upsert) (context.Context, context.CancelFunc) {
	deadline := time.Time{}
	for _, up := range batch {
		d, ok := up.ctx.Deadline()
		if !ok {
			d = time.Now().Add(5 * time.Second)
		}
		if d.After(deadline) {
			deadline = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(batch[0].ctx), deadline)
}

// upsertMany runs upsertBatch and returns its users by lowercased address.
func (s *Store) upsertMany(ctx context.Context, emails []string, ats []time.Time, ids []string) (map[string]authd.User, error) {
	rows, err := s.pool.Query(ctx, upsertBatch, emails, ats, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]authd.User, len(emails))
	for rows.Next() {
		key, u, err := scanKeyedUser(rows)
		if err != nil {
			return nil, err
		}
		out[key] = u
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
