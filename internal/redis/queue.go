package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// The mail queue (authd.MailQueue). IssueCode's script XADDs each job to
// the stream of its address's partition, in the code's hash slot, with its
// delivery status beside it: code, job and status are one atomic write
// even on a Redis Cluster, and the 64 streams spread over its nodes.
// Workers read the streams through one consumer group. claim.lua hands
// out new entries, then lapsed claims; claims age by the callers' clock,
// each partition's claims set holding when each was made or last renewed
// (extend.lua); release.lua gives them up; finish.lua writes a job's final
// status and removes it. Everything a script touches is in one partition's
// slot, named from the stream a job came from.

var _ authd.MailQueue = (*Store)(nil)

// mailGroup is the consumer group every authd instance reads through.
const mailGroup = "authd"

// mailStreams returns the 64 streams, partition by partition.
func (s *Store) mailStreams() []string {
	out := make([]string, authd.Partitions)
	for p := range out {
		out[p] = s.tag(p) + "mail"
	}
	return out
}

// partitionTag returns the hash tag part of a stream of this store
// ("P{a:B}:"), or false for anything else.
func (s *Store) partitionTag(stream string) (string, bool) {
	tag, ok := strings.CutSuffix(stream, "mail")
	if !ok || !strings.HasPrefix(tag, s.prefix+"{a:") || !strings.HasSuffix(tag, "}:") {
		return "", false
	}
	return tag, true
}

// claimsKey is the claims set beside stream.
func claimsKey(tag string) string { return tag + "claims" }

// statusKey is the status of delivery id, in the partition tag names.
func statusKey(tag, id string) string { return tag + "dlv:" + id }

// jobRef is a ClaimedJob's Ref: "<stream> <entry id>".
func jobRef(stream, id string) string { return stream + " " + id }

// splitRef reads a Ref of this store: its stream's partition tag, the
// stream and the entry id.
func (s *Store) splitRef(ref string) (tag, stream, id string, ok bool) {
	stream, id, ok = strings.Cut(ref, " ")
	if !ok {
		return "", "", "", false
	}
	tag, ok = s.partitionTag(stream)
	return tag, stream, id, ok
}

func badRef(ref string) error {
	return authd.Errorf(authd.EINTERNAL, "redis: not a job of this queue: %q", ref)
}

// claimState is what a Store knows of the claims, so that Claim looks for
// lapsed ones (64 sets to read) only when one may have lapsed: at the
// latest claimTimeout/4 after it last looked, and at once when a claim it
// saw then lapses or this store released one. A claim made since by
// another instance lapses claimTimeout after it was made, so it is seen in
// time; one released by another instance waits up to claimTimeout/4.
// It also keeps whether the last claim was full from one stream: while
// the queue is that long, Claim reads a stream by XREADGROUP first
// (readFresh).
type claimState struct {
	mu       sync.Mutex
	turn     int       // the stream the next look starts from
	looked   time.Time // the caller's time of the last look; zero: never, or released since
	earliest time.Time // the earliest claim time seen then; zero: none
	full     bool      // the last claim took all it asked for, new jobs of one stream
}

// due reports whether Claim at now should look for lapsed claims, from
// which stream, and whether the last claim was full.
func (c *claimState) due(now time.Time, timeout time.Duration) (look bool, turn int, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.turn++
	switch {
	case c.looked.IsZero(), now.Before(c.looked), now.Sub(c.looked) >= timeout/4,
		!c.earliest.IsZero() && !now.Before(c.earliest.Add(timeout)):
		return true, c.turn, c.full
	}
	return false, c.turn, c.full
}

// took records whether a claim was full from one stream.
func (c *claimState) took(full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.full = full
}

// saw records a look at now that left earliest as the earliest claim.
func (c *claimState) saw(now, earliest time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.looked, c.earliest = now, earliest
}

// released makes the next Claim look at once.
func (c *claimState) released() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.looked = time.Time{}
}

// Claim implements authd.MailQueue: claim.lua. On a single Redis one
// script reads all 64 streams, one round trip, and claims up to n jobs in
// all (new ones first, then lapsed claims when any may have lapsed: see
// claimState). While the queue is long (the last claim took all it asked
// for, new jobs of one stream), the stream whose turn it is is read by
// XREADGROUP first (readFresh), claim.lua running only for what it
// lacked: two round trips, the second writing the claims' times beside
// the code lookups (checkLive), for a third of the script's cost to
// Redis. A read that fills the claim does so whether or not a look for
// lapsed claims is due: the script too would have filled it with new
// jobs first and taken none over, so the look waits for a claim that new
// jobs do not fill. On a Redis Cluster a pipeline of one script per
// stream (a round trip per node), each claiming up to ceil(n/64): at most
// n+63 in all, so that one instance does not take the queue while the
// others idle.
func (s *Store) Claim(ctx context.Context, consumer string, n int, claimTimeout time.Duration, now time.Time) ([]authd.ClaimedJob, error) {
	if n <= 0 {
		return nil, nil
	}
	claimTimeout = max(claimTimeout, 0)
	look, turn, full := s.claims.due(now, claimTimeout)
	var read []authd.ClaimedJob // by readFresh: their claims' times are still to be written
	if full && !s.split {
		var err error
		if read, err = s.readFresh(ctx, consumer, n, s.queue[2*(turn%authd.Partitions)]); err != nil {
			return nil, err
		}
		if len(read) == n {
			s.checkLive(ctx, read, read, now)
			return read, nil
		}
	}
	lapsedArg := "0"
	if look {
		lapsedArg = "1"
	}
	args := func(n, start int) []any {
		return []any{mailGroup, consumer, n, now.UnixMicro(), claimTimeout.Microseconds(), lapsedArg, start + 1}
	}
	var calls []scriptCall
	if !s.split {
		calls = []scriptCall{{claimScript, s.queue, args(n-len(read), turn%authd.Partitions)}}
	} else {
		for i := 0; i < len(s.queue); i += 2 {
			calls = append(calls, scriptCall{claimScript, s.queue[i : i+2], args((n+authd.Partitions-1)/authd.Partitions, 0)})
		}
	}
	replies, err := s.runAll(ctx, calls)
	var fresh, lapsed []authd.ClaimedJob
	var earliest time.Time
	for _, r := range replies {
		a := asSlice(r)
		if len(a) != 3 {
			continue // failed: err says so
		}
		fresh = append(fresh, parseEntries(a[0])...)
		lapsed = append(lapsed, parseEntries(a[1])...)
		if next, _ := a[2].(string); next != "" {
			if v, perr := strconv.ParseInt(next, 10, 64); perr == nil {
				if at := time.UnixMicro(v); earliest.IsZero() || at.Before(earliest) {
					earliest = at
				}
			}
		}
	}
	if look && err == nil {
		s.claims.saw(now, earliest)
	}
	jobs := append(append(read, fresh...), lapsed...)
	s.claims.took(len(read) == 0 && len(fresh) == n && oneStream(fresh))
	if err != nil && len(jobs) == 0 {
		return nil, err
	}
	// Some streams failed, others were claimed from: those jobs are this
	// consumer's now, and the others are read next time.
	s.checkLive(ctx, jobs, read, now)
	return jobs, nil
}

// oneStream reports whether jobs (at least one) all come from one
// stream.
func oneStream(jobs []authd.ClaimedJob) bool {
	if len(jobs) == 0 {
		return false
	}
	first, _, _ := strings.Cut(jobs[0].Ref, " ")
	for _, j := range jobs[1:] {
		if st, _, _ := strings.Cut(j.Ref, " "); st != first {
			return false
		}
	}
	return true
}

// readFresh claims up to n jobs never claimed from stream, by XREADGROUP
// itself: in claim.lua the same read costs Redis three times as much,
// Lua turning each entry's nine fields into tables and back
// (BenchmarkQueueRedisCost). Their claims' times are not written: the
// caller's checkLive writes them. A consumer that dies in between leaves
// its entries in the group's pending list without one; claim.lua's
// adopt_unrecorded ages them from their idle time, and they lapse as any
// claim does. A stream without the group yet (claim.lua makes a
// stream's when it first reads it; or a Redis emptied) has every stream's
// group made, and is read again.
func (s *Store) readFresh(ctx context.Context, consumer string, n int, stream string) ([]authd.ClaimedJob, error) {
	read := func() ([]goredis.XStream, error) {
		return s.client.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: mailGroup, Consumer: consumer,
			Streams: []string{stream, ">"}, Count: int64(n), Block: -1}).Result()
	}
	res, err := read()
	if goredis.HasErrorPrefix(err, "NOGROUP") {
		if err = s.makeGroups(ctx); err == nil {
			res, err = read()
		}
	}
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err)
	}
	var jobs []authd.ClaimedJob
	for _, st := range res {
		for _, m := range st.Messages {
			jobs = append(jobs, parseJob(st.Stream, m))
		}
	}
	return jobs, nil
}

// makeGroups makes the consumer group of every stream (and the stream
// where there is none), from id 0: jobs queued before it are read too. A
// group already there stays as it is.
func (s *Store) makeGroups(ctx context.Context) error {
	cmds := make([]*goredis.StatusCmd, authd.Partitions)
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.XGroupCreateMkStream(ctx, s.queue[2*i], mailGroup, "0")
		}
		return nil
	})
	for _, c := range cmds {
		if err := c.Err(); err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
			return err
		}
	}
	return nil
}

// checkLive looks up whether the codes of the jobs past their
// ReplaceableAt are still live (ClaimedJob.Checked): one HMGET each, all
// in one pipeline (a round trip per node on a Redis Cluster), in place of
// the worker's IsCurrent per mail. The same pipeline first writes the
// claims' times of record, jobs of one stream that readFresh claimed. A
// failed pipeline leaves the jobs unchecked: they are claimed all the
// same, and the worker asks itself; a claim's time it did not write is
// the keeper's next Extend's to write (adopt_unrecorded's until then).
func (s *Store) checkLive(ctx context.Context, jobs, record []authd.ClaimedJob, now time.Time) {
	var due []int
	for i, j := range jobs {
		if j.DeliveryID != "" && !now.Before(j.ReplaceableAt) {
			due = append(due, i)
		}
	}
	if len(due) == 0 && len(record) == 0 {
		return
	}
	cmds := make([]*goredis.SliceCmd, len(due))
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if len(record) > 0 {
			tag, _, _, _ := s.splitRef(record[0].Ref)
			members := make([]goredis.Z, len(record))
			for i, j := range record {
				_, _, id, _ := s.splitRef(j.Ref)
				members[i] = goredis.Z{Score: float64(now.UnixMicro()), Member: id}
			}
			p.ZAdd(ctx, claimsKey(tag), members...)
		}
		for k, i := range due {
			cmds[k] = p.HMGet(ctx, s.keysOf(jobs[i].Address, jobs[i].Project).code, "id", "exp")
		}
		return nil
	})
	for k, i := range due {
		v, err := cmds[k].Result()
		if err != nil {
			continue
		}
		if live, err := codeLive(v, jobs[i].CodeID, now); err == nil {
			jobs[i].Checked, jobs[i].Live = true, live
		}
	}
}

// parseEntries reads claim.lua's entries: {stream, id, {field, value, ...}}.
func parseEntries(v any) []authd.ClaimedJob {
	var out []authd.ClaimedJob
	for _, e := range asSlice(v) {
		a := asSlice(e)
		if len(a) != 3 {
			continue
		}
		stream, _ := a[0].(string)
		id, _ := a[1].(string)
		fields := asSlice(a[2])
		values := make(map[string]any, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			if k, ok := fields[i].(string); ok {
				values[k] = fields[i+1]
			}
		}
		out = append(out, parseJob(stream, goredis.XMessage{ID: id, Values: values}))
	}
	return out
}

// parseJob reads a stream entry. An entry this version cannot read keeps
// its Ref and an empty DeliveryID: the worker finishes it as failed.
func parseJob(stream string, m goredis.XMessage) authd.ClaimedJob {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	micros := func(k string) time.Time {
		v, err := strconv.ParseInt(str(k), 10, 64)
		if err != nil {
			return time.Time{}
		}
		return time.UnixMicro(v).UTC()
	}
	// A job queued before mailboxes had keys of their own was in its
	// address's partition: its mailbox key was its address key.
	addr := authd.Address{Key: str("a"), Mailbox: str("m")}
	if addr.Mailbox == "" {
		addr.Mailbox = addr.Key
	}
	return authd.ClaimedJob{
		MailJob: authd.MailJob{
			DeliveryID: str("d"), Address: addr, Project: str("p"), CodeID: str("c"),
			ExpiresAt: micros("e"), ReplaceableAt: micros("r"), Sealed: []byte(str("s")),
		},
		Ref:      jobRef(stream, m.ID),
		QueuedAt: queuedAt(m),
	}
}

// queuedAt is when an entry was queued, by the caller's clock (field t);
// for an entry queued by an older version, by the Redis server's (its id's
// milliseconds).
func queuedAt(m goredis.XMessage) time.Time {
	if t, _ := m.Values["t"].(string); t != "" {
		if v, err := strconv.ParseInt(t, 10, 64); err == nil {
			return time.UnixMicro(v).UTC()
		}
	}
	ms, _, ok := strings.Cut(m.ID, "-")
	if !ok {
		return time.Time{}
	}
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// byStream groups jobs' entry ids by stream, for one script per stream;
// Refs that are not this store's are left out.
func (s *Store) byStream(jobs []authd.ClaimedJob) (streams []string, tags map[string]string, ids map[string][]any) {
	tags, ids = map[string]string{}, map[string][]any{}
	for _, j := range jobs {
		tag, st, id, ok := s.splitRef(j.Ref)
		if !ok {
			continue
		}
		if _, seen := ids[st]; !seen {
			streams = append(streams, st)
			tags[st] = tag
		}
		ids[st] = append(ids[st], id)
	}
	return streams, tags, ids
}

// Extend implements authd.MailQueue: one extend.lua per stream, in one
// pipeline.
func (s *Store) Extend(ctx context.Context, consumer string, jobs []authd.ClaimedJob, now time.Time) error {
	streams, tags, ids := s.byStream(jobs)
	var calls []scriptCall
	for _, st := range streams {
		calls = append(calls, scriptCall{extendScript, []string{st, claimsKey(tags[st])},
			append([]any{mailGroup, consumer, now.UnixMicro()}, ids[st]...)})
	}
	if len(calls) == 0 {
		return nil
	}
	_, err := s.runAll(ctx, calls)
	return err
}

// Release implements authd.MailQueue: one release.lua per stream, in one
// pipeline.
func (s *Store) Release(ctx context.Context, consumer string, jobs []authd.ClaimedJob) error {
	streams, tags, ids := s.byStream(jobs)
	var calls []scriptCall
	for _, st := range streams {
		calls = append(calls, scriptCall{releaseScript, []string{st, claimsKey(tags[st])},
			append([]any{mailGroup, consumer}, ids[st]...)})
	}
	if len(calls) == 0 {
		return nil
	}
	s.claims.released()
	_, err := s.runAll(ctx, calls)
	return err
}

// Retrying implements authd.MailQueue: status.lua in the job's partition.
// The status is written only while the job is queued.
func (s *Store) Retrying(ctx context.Context, job authd.ClaimedJob, attempts int, next, now time.Time) error {
	tag, st, id, ok := s.splitRef(job.Ref)
	if !ok {
		return badRef(job.Ref)
	}
	if job.DeliveryID == "" {
		return nil // an entry this version cannot read has no status
	}
	_, err := s.runAll(ctx, []scriptCall{{statusScript, []string{st, statusKey(tag, job.DeliveryID)},
		[]any{id, now.UnixMicro(), job.ExpiresAt.UnixMicro(), authd.DeliveryRetrying, attempts, next.UnixMicro()}}})
	return err
}

// Finish implements authd.MailQueue: FinishAll of one job.
func (s *Store) Finish(ctx context.Context, job authd.ClaimedJob, status string, attempts int, now time.Time) error {
	return s.FinishAll(ctx, []authd.FinishedJob{{Job: job, Status: status, Attempts: attempts}}, now)
}

// FinishAll implements authd.MailQueue: finish.lua, one call for all the
// jobs on a single Redis, one per partition on a Redis Cluster (all in
// one pipeline: a round trip per node). Each job's final status (while
// it is still queued), then XACK, XDEL (the job's payload, sealed code
// included, leaves Redis) and its claim.
func (s *Store) FinishAll(ctx context.Context, jobs []authd.FinishedJob, now time.Time) error {
	var calls []scriptCall
	byTag := map[string]int{} // a partition's call in calls (split only)
	for _, f := range jobs {
		tag, st, id, ok := s.splitRef(f.Job.Ref)
		if !ok {
			return badRef(f.Job.Ref)
		}
		key := ""
		if s.split {
			key = tag
		}
		i, seen := byTag[key]
		if !seen {
			i, byTag[key] = len(calls), len(calls)
			calls = append(calls, scriptCall{finishScript, nil, []any{mailGroup, now.UnixMicro()}})
		}
		withStatus := 1
		if f.Job.DeliveryID == "" {
			withStatus = 0 // an entry this version cannot read has no status
		}
		c := &calls[i]
		c.keys = append(c.keys, st, claimsKey(tag), statusKey(tag, f.Job.DeliveryID))
		c.args = append(c.args, id, f.Job.ExpiresAt.UnixMicro(), f.Status, f.Attempts, withStatus)
	}
	if len(calls) == 0 {
		return nil
	}
	_, err := s.runAll(ctx, calls)
	return err
}

// authd.ErrNoDelivery is Delivery's answer for an unknown delivery.

// Delivery implements authd.MailQueue. The id names its partition
// (authd.DeliveryPartition); an id that does not has no status.
func (s *Store) Delivery(ctx context.Context, id string, now time.Time) (authd.Delivery, error) {
	p, ok := authd.DeliveryPartition(id)
	if !ok {
		return authd.Delivery{}, authd.ErrNoDelivery
	}
	v, err := s.client.HGetAll(ctx, statusKey(s.tag(p), id)).Result()
	if err != nil {
		return authd.Delivery{}, unavailable(err)
	}
	exp, err1 := strconv.ParseInt(v["exp"], 10, 64)
	n, err2 := strconv.Atoi(v["n"])
	next, err3 := strconv.ParseInt(v["next"], 10, 64)
	if len(v) == 0 || err1 != nil || err2 != nil || err3 != nil || exp <= now.UnixMicro() {
		return authd.Delivery{}, authd.ErrNoDelivery
	}
	d := authd.Delivery{Status: v["st"], Attempts: n, ExpiresAt: time.UnixMicro(exp).UTC()}
	if d.Status == authd.DeliveryRetrying && next > 0 {
		d.NextAttempt = time.UnixMicro(next).UTC()
	}
	return d, nil
}

// OldestQueued implements authd.MailQueue: the first entry of each of the
// 64 streams, in one pipeline (a round trip per node on a cluster). An
// entry stays until Finish deletes it; its time is the caller's at issue.
func (s *Store) OldestQueued(ctx context.Context) (time.Time, error) {
	streams := s.mailStreams()
	cmds := make([]*goredis.XMessageSliceCmd, len(streams))
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, st := range streams {
			cmds[i] = p.XRangeN(ctx, st, "-", "+", 1)
		}
		return nil
	})
	var oldest time.Time
	for _, c := range cmds {
		msgs, err := c.Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return time.Time{}, unavailable(err)
		}
		if len(msgs) == 0 {
			continue
		}
		if at := queuedAt(msgs[0]); !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	return oldest, nil
}
