package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
)

// LoadScripts caches every script on every master of c (on a cluster each
// node has its own cache), so that tests counting round trips do not
// count the first call's EVAL on a node that had not run it.
func LoadScripts(ctx context.Context, c goredis.UniversalClient) error {
	scripts := []*goredis.Script{issueScript, consumeScript, takeScript, refundScript, restoreScript,
		claimScript, extendScript, releaseScript, statusScript, finishScript}
	load := func(ctx context.Context, c goredis.Scripter) error {
		for _, s := range scripts {
			if err := s.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return load(ctx, m) })
	}
	return load(ctx, c)
}
