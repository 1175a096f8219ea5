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

// The mail queue (authd.MailQueue): IssueCode's script XADDs each job to
// the stream of its address bucket, in the code's hash slot, so code and
// job are one atomic write even on a Redis Cluster, and the 64 streams
// spread over its nodes. Workers read them through one consumer group:
// XREADGROUP for new jobs, XAUTOCLAIM for jobs whose consumer stopped
// renewing its claim (extend.lua), XACK + XDEL once a job is done. A
// delivery's status is a small hash of its own, kept until the code expires.

var _ authd.MailQueue = (*Store)(nil)

// mailGroup is the consumer group every authd instance reads through.
const mailGroup = "authd"

// queueState is the Store's bookkeeping for its consumers.
type queueState struct {
	mu        sync.Mutex
	groupsOK  bool      // the group exists on every stream
	lastStale time.Time // the last sweep for lapsed claims
}

func (s *Store) statusKey(id string) string { return s.prefix + "{d:" + id + "}:dlv" }

// mailStreams returns the 64 streams, bucket by bucket.
func (s *Store) mailStreams() []string {
	out := make([]string, addressBuckets)
	for i := range out {
		out[i] = s.prefix + "{a:" + strconv.Itoa(i) + "}:mail"
	}
	return out
}

// jobArgs are the issue scripts' job arguments.
func jobArgs(j *authd.MailJob) []any {
	return []any{j.DeliveryID, j.Address, j.Project, j.ReplaceableAt.UnixMicro(), j.Sealed}
}

// ensureGroups creates the consumer group on every stream (and the streams),
// once. The group starts at id 0: jobs queued before it existed are read
// too.
func (s *Store) ensureGroups(ctx context.Context) error {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	if s.queue.groupsOK {
		return nil
	}
	streams := s.mailStreams()
	cmds := make([]*goredis.StatusCmd, len(streams))
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, st := range streams {
			cmds[i] = p.XGroupCreateMkStream(ctx, st, mailGroup, "0")
		}
		return nil
	})
	for _, c := range cmds {
		if err := c.Err(); err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
			return unavailable(err)
		}
	}
	s.queue.groupsOK = true
	return nil
}

// resetGroups makes the next call create the groups again: a NOGROUP reply
// means the streams were deleted (FLUSHDB, a failover to an empty replica).
func (s *Store) resetGroups(err error) {
	if goredis.HasErrorPrefix(err, "NOGROUP") {
		s.queue.mu.Lock()
		s.queue.groupsOK = false
		s.queue.mu.Unlock()
	}
}

// Claim implements authd.MailQueue. New jobs cost one command (a pipeline
// of one per stream in split mode); lapsed claims are looked for at most
// every claimTimeout/4, in one pipeline of XAUTOCLAIMs.
func (s *Store) Claim(ctx context.Context, consumer string, n int, claimTimeout time.Duration, now time.Time) ([]authd.ClaimedJob, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := s.ensureGroups(ctx); err != nil {
		return nil, err
	}
	jobs, err := s.claimNew(ctx, consumer, n)
	if err != nil {
		s.resetGroups(err)
		return nil, unavailable(err)
	}
	if len(jobs) >= n || !s.staleDue(now, claimTimeout) {
		return jobs, nil
	}
	stale, err := s.claimStale(ctx, consumer, n-len(jobs), claimTimeout)
	if err != nil {
		s.resetGroups(err)
		return jobs, nil // the new ones are ours now; the sweep is retried next time
	}
	return append(jobs, stale...), nil
}

func (s *Store) staleDue(now time.Time, claimTimeout time.Duration) bool {
	s.queue.mu.Lock()
	defer s.queue.mu.Unlock()
	if now.Sub(s.queue.lastStale) < max(claimTimeout/4, 10*time.Millisecond) {
		return false
	}
	s.queue.lastStale = now
	return true
}

func (s *Store) claimNew(ctx context.Context, consumer string, n int) ([]authd.ClaimedJob, error) {
	streams := s.mailStreams()
	var res []goredis.XStream
	if !s.split {
		args := make([]string, 0, 2*len(streams))
		args = append(args, streams...)
		for range streams {
			args = append(args, ">")
		}
		r, err := s.client.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group: mailGroup, Consumer: consumer, Streams: args, Count: int64(n), Block: -1,
		}).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return nil, err
		}
		res = r
	} else {
		// One stream per command: a multi-stream read would span slots.
		cmds := make([]*goredis.XStreamSliceCmd, len(streams))
		_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, st := range streams {
				cmds[i] = p.XReadGroup(ctx, &goredis.XReadGroupArgs{
					Group: mailGroup, Consumer: consumer, Streams: []string{st, ">"}, Count: int64(n), Block: -1,
				})
			}
			return nil
		})
		for _, c := range cmds {
			r, err := c.Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				return nil, err
			}
			res = append(res, r...)
		}
	}
	var out []authd.ClaimedJob
	for _, st := range res {
		for _, m := range st.Messages {
			out = append(out, parseJob(st.Stream, m))
		}
	}
	return out, nil
}

func (s *Store) claimStale(ctx context.Context, consumer string, n int, claimTimeout time.Duration) ([]authd.ClaimedJob, error) {
	streams := s.mailStreams()
	cmds := make([]*goredis.XAutoClaimCmd, len(streams))
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, st := range streams {
			cmds[i] = p.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
				Stream: st, Group: mailGroup, Consumer: consumer,
				MinIdle: claimTimeout, Start: "0-0", Count: int64(n),
			})
		}
		return nil
	})
	var out []authd.ClaimedJob
	var first error
	for i, c := range cmds {
		msgs, _, err := c.Result()
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		for _, m := range msgs {
			out = append(out, parseJob(streams[i], m))
		}
	}
	return out, first
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
	j := authd.ClaimedJob{
		MailJob: authd.MailJob{
			DeliveryID: str("d"), Address: str("a"), Project: str("p"), CodeID: str("c"),
			ExpiresAt: micros("e"), ReplaceableAt: micros("r"), Sealed: []byte(str("s")),
		},
		Ref: stream + " " + m.ID,
	}
	j.QueuedAt = entryTime(m.ID)
	return j
}

func splitRef(ref string) (stream, id string) {
	stream, id, _ = strings.Cut(ref, " ")
	return stream, id
}

// Extend implements authd.MailQueue: one extend.lua per stream, pipelined.
func (s *Store) Extend(ctx context.Context, consumer string, jobs []authd.ClaimedJob, now time.Time) error {
	byStream := map[string][]any{}
	for _, j := range jobs {
		st, id := splitRef(j.Ref)
		byStream[st] = append(byStream[st], id)
	}
	var calls []scriptCall
	for st, ids := range byStream {
		calls = append(calls, scriptCall{extendScript, []string{st}, append([]any{mailGroup, consumer}, ids...)})
	}
	if len(calls) == 0 {
		return nil
	}
	_, err := s.runAll(ctx, calls)
	return err
}

// Release implements authd.MailQueue: release.lua per stream, pipelined.
// The next Claim of this store looks for lapsed claims at once.
func (s *Store) Release(ctx context.Context, consumer string, jobs []authd.ClaimedJob) error {
	byStream := map[string][]any{}
	for _, j := range jobs {
		st, id := splitRef(j.Ref)
		byStream[st] = append(byStream[st], id)
	}
	var calls []scriptCall
	for st, ids := range byStream {
		calls = append(calls, scriptCall{releaseScript, []string{st}, append([]any{mailGroup, consumer}, ids...)})
	}
	if len(calls) == 0 {
		return nil
	}
	s.queue.mu.Lock()
	s.queue.lastStale = time.Time{}
	s.queue.mu.Unlock()
	_, err := s.runAll(ctx, calls)
	return err
}

// Retrying implements authd.MailQueue.
func (s *Store) Retrying(ctx context.Context, job authd.ClaimedJob, attempts int, next, now time.Time) error {
	_, err := s.runAll(ctx, []scriptCall{{statusScript, []string{s.statusKey(job.DeliveryID)},
		[]any{now.UnixMicro(), job.ExpiresAt.UnixMicro(), authd.DeliveryRetrying, attempts, next.UnixMicro()}}})
	return err
}

// Finish implements authd.MailQueue: the status first, then XACK and XDEL
// (the job's payload, sealed code included, leaves Redis), in one pipeline.
func (s *Store) Finish(ctx context.Context, job authd.ClaimedJob, status string, attempts int, now time.Time) error {
	st, id := splitRef(job.Ref)
	var statusCmd *goredis.Cmd
	cmds, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if job.DeliveryID != "" {
			statusCmd = statusScript.EvalSha(ctx, p, []string{s.statusKey(job.DeliveryID)},
				now.UnixMicro(), job.ExpiresAt.UnixMicro(), status, attempts, 0)
		}
		p.XAck(ctx, st, mailGroup, id)
		p.XDel(ctx, st, id)
		return nil
	})
	if statusCmd != nil && goredis.HasErrorPrefix(statusCmd.Err(), "NOSCRIPT") {
		err = statusScript.Run(ctx, s.client, []string{s.statusKey(job.DeliveryID)},
			now.UnixMicro(), job.ExpiresAt.UnixMicro(), status, attempts, 0).Err()
		for _, c := range cmds {
			if c != statusCmd && c.Err() != nil {
				err = c.Err()
			}
		}
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		return unavailable(err)
	}
	return nil
}

// Delivery implements authd.MailQueue.
func (s *Store) Delivery(ctx context.Context, id string, now time.Time) (authd.Delivery, error) {
	v, err := s.client.HGetAll(ctx, s.statusKey(id)).Result()
	if err != nil {
		return authd.Delivery{}, unavailable(err)
	}
	exp, err1 := strconv.ParseInt(v["exp"], 10, 64)
	n, err2 := strconv.Atoi(v["n"])
	next, err3 := strconv.ParseInt(v["next"], 10, 64)
	if len(v) == 0 || err1 != nil || err2 != nil || err3 != nil || exp <= now.UnixMicro() {
		return authd.Delivery{}, &authd.Error{Code: authd.ENOTFOUND, Message: "Delivery not found"}
	}
	d := authd.Delivery{Status: v["st"], Attempts: n, ExpiresAt: time.UnixMicro(exp).UTC()}
	if d.Status == authd.DeliveryRetrying && next > 0 {
		d.NextAttempt = time.UnixMicro(next).UTC()
	}
	return d, nil
}

// OldestQueued implements authd.MailQueue: the first entry of each of the
// 64 streams, in one pipeline (split by slot on a cluster). An entry's id
// is the Redis server's time in milliseconds when it was queued, and an
// entry stays until Finish deletes it.
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
		if at := entryTime(msgs[0].ID); !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	return oldest, nil
}

// entryTime is when a stream entry was added: its id's milliseconds.
func entryTime(id string) time.Time {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}
	}
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
