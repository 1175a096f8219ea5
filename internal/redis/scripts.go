package redis

import (
	"context"
	"embed"

	goredis "github.com/redis/go-redis/v9"
)

//go:embed *.lua
var luaFiles embed.FS

// The scripts, each lib.lua followed by its own file: Redis has no way for
// one script to call another, so the shared parts are put in front.
var (
	issueScript   = script("issue.lua")
	consumeScript = script("consume.lua")
	takeScript    = script("take.lua")
	refundScript  = script("refund.lua")
	restoreScript = script("restore.lua")
	claimScript   = script("claim.lua")
	extendScript  = script("extend.lua")
	releaseScript = script("release.lua")
	statusScript  = script("status.lua")
	finishScript  = script("finish.lua")
)

func script(name string) *goredis.Script {
	lib, err := luaFiles.ReadFile("lib.lua")
	if err != nil {
		panic(err)
	}
	body, err := luaFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return goredis.NewScript(string(lib) + "\n" + string(body))
}

// scriptCall is one script to run with its keys and arguments.
type scriptCall struct {
	script *goredis.Script
	keys   []string
	args   []any
}

// runAll runs calls in one pipeline (one round trip per node), each by
// EVALSHA, falling back to EVAL for those the server had not cached. It
// returns the replies in order, or the first error.
func (s *Store) runAll(ctx context.Context, calls []scriptCall) ([]any, error) {
	if len(calls) == 1 {
		c := calls[0]
		v, err := c.script.Run(ctx, s.client, c.keys, c.args...).Result()
		if err != nil {
			return nil, unavailable(err)
		}
		return []any{v}, nil
	}
	cmds := make([]*goredis.Cmd, len(calls))
	// Each command's error is read below; Exec's is the first of them.
	_, _ = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	out := make([]any, len(calls))
	var first error
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// Not run: run it alone, loading it.
			c := calls[i]
			v, err = c.script.Run(ctx, s.client, c.keys, c.args...).Result()
		}
		if err != nil && first == nil {
			first = unavailable(err)
		}
		out[i] = v
	}
	return out, first
}
