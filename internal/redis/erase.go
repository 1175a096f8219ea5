package redis

import (
	"context"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// EraseAddress deletes everything kept about an address key: its live
// codes and resend cooldowns in every project, and its send and failure
// budgets (erasure on request). Mail jobs already queued are not touched:
// they are encrypted, and the worker drops a job whose code is gone.
// It reports how many keys it deleted.
//
// The codes' keys are found with SCAN (the project is part of the key); on
// a cluster, on every master.
//
// Errors: EUNAVAILABLE.
func (s *Store) EraseAddress(ctx context.Context, address string) (int, error) {
	k := s.keysOf(address, "")
	tag := strings.TrimSuffix(k.sent, "sent:"+address)
	patterns := []string{
		globEscape(tag) + "code:*:" + globEscape(address),
		globEscape(tag) + "cool:*:" + globEscape(address),
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
	return int(n), nil
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
