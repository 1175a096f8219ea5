-- take.lua counts one event against one limit if it fits: on a Redis
-- Cluster, the limits of IssueCode and ConsumeCode that live outside the
-- address's slot are taken this way before the address's script runs
-- (split.go).
--
-- KEYS: the limit's key
-- ARGV: now, t, n
-- Reply: {1, remaining, reset} or {0, wait, 0}
local now, t, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ok, tat, wait = gcra_check(KEYS[1], now, t, n)
if not ok then
  return {0, wait, 0}
end
gcra_set(KEYS[1], now, t, tat)
local remaining, reset = gcra_state(now, t, n, tat)
return {1, remaining, reset}
