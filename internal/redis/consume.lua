-- consume.lua is ConsumeCode (inmem: CodeStore.ConsumeCode), the same
-- script on every kind of Redis. On a single Redis or Sentinel it is given
-- the client-IP verify limit before the address's keys; on a Redis
-- Cluster take.lua has taken that limit already, in its own slot, and
-- this script is given none (split.go).
--
-- KEYS: [ip,] fail, code
-- ARGV: now, count (of limits), [name, t, n,] fail_t, fail_n, hash, max_attempts
-- Reply: {'limit', name, wait}, or {first_remaining, first_reset} followed
-- by consume_address's reply.
local now, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = 3
local c, a = count, at + 3 * count

local tats, name, wait = limits_check(count, at, now)
if name then
  return refusal(name, wait, at, now, tats)
end
-- The IP pays for every try it is allowed, whatever the outcome.
limits_set(count, at, now, tats)
local remaining, reset = limits_state(count, at, now, tats)

local r = consume_address(KEYS[c + 1], KEYS[c + 2], now, tonumber(ARGV[a]), tonumber(ARGV[a + 1]),
  ARGV[a + 2], tonumber(ARGV[a + 3]))
table.insert(r, 1, reset)
table.insert(r, 1, remaining)
return r
