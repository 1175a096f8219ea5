package redis

import (
	"context"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// EraseAddress deletes everything kept about an address: its live codes
// and resend cooldowns in every project, its mailbox's send and failure
// budgets, and its mail jobs still queued with their delivery statuses and
// claims (erasure on request: a mail queued before it is not sent after
// it; the worker skips the code check before a job's resend cooldown ends,
// so deleting the code alone would not stop it). It reports how many keys
// of codes, cooldowns and budgets it deleted; jobs are not counted.
//
// Everything of the address is in its partition's slot. The codes' keys
// are found with SCAN (the project is part of the key); on a cluster, on
// every master.
//
// Errors: EUNAVAILABLE.
func (s *Store) EraseAddress(ctx context.Context, a authd.Address) (int, error) {
	k, address := s.keysOf(a, ""), a.Key
	patterns := []string{
		globEscape(k.tag) + "code:*:" + globEscape(address),
		globEscape(k.tag) + "cool:*:" + globEscape(address),
	}
	var mu sync.Mutex
	keys := []string{k.sent, k.fail}
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		for _, p := range patterns {
			iter := c.Scan(ctx, 0, p, 1000).Iterator()
			for iter.Next(ctx) {
				mu.Lock()
				keys = append(keys, iter.Val())
				mu.Unlock()
			}
			if err := iter.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return 0, unavailable(err)
	}
	// All of them share the address's hash slot: one DEL even on a cluster.
	n, err := s.client.Del(ctx, keys...).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	// The jobs after the codes: a worker already holding one (waiting to
	// retry) checks the code before its next attempt and finds it gone.
	if err := s.eraseJobs(ctx, k.tag, address); err != nil {
		return 0, unavailable(err)
	}
	return int(n), nil
}

// eraseJobs deletes address's entries from its partition's stream, claimed
// or not (XACK too, so no consumer's pending list keeps them), their
// claims and their delivery statuses. The stream holds only jobs not yet
// finished, so reading it whole is cheap; it is read in pages all the
// same. The deletions share one slot: one transaction, even on a cluster.
func (s *Store) eraseJobs(ctx context.Context, tag, address string) error {
	const page = 500
	stream := tag + "mail"
	var ids, statuses []string
	for start := "-"; ; {
		msgs, err := s.client.XRangeN(ctx, stream, start, "+", page).Result()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if a, _ := m.Values["a"].(string); a != address {
				continue
			}
			ids = append(ids, m.ID)
			if d, _ := m.Values["d"].(string); d != "" {
				statuses = append(statuses, statusKey(tag, d))
			}
		}
		if len(msgs) < page {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	if len(ids) == 0 {
		return nil
	}
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	var ack *goredis.IntCmd
	cmds, _ := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		ack = p.XAck(ctx, stream, mailGroup, ids...)
		p.XDel(ctx, stream, ids...)
		p.ZRem(ctx, claimsKey(tag), members...)
		if len(statuses) > 0 {
			p.Del(ctx, statuses...)
		}
		return nil
	})
	for _, c := range cmds {
		err := c.Err()
		if c == goredis.Cmder(ack) && goredis.HasErrorPrefix(err, "NOGROUP") {
			continue // no worker has read the streams yet: nothing pending
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// globEscape quotes SCAN's pattern characters in a literal part.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
