-- consume_address.lua is the address's half of ConsumeCode in split mode
-- (Redis Cluster), pipelined with take.lua for the client-IP limit, which
-- lives in another slot.
--
-- KEYS: fail, code (one hash slot)
-- ARGV: now, fail_t, fail_n, hash, max_attempts
-- Reply: {consume_address's reply (see lib.lua), undo}: undo is what
-- undo_consume.lua needs to take this try back if the IP was refused, as
-- strings: code_id, code_hash, code_exp, code_att (the record before),
-- att_after ('' when deleted), fail_new, fail_prev, fail_prev_ttl ('' for a
-- missing key); or {} when the try changed nothing.
local fail, code = KEYS[1], KEYS[2]
local fail_prev = redis.call('GET', fail) or ''
local fail_prev_ttl = int(redis.call('PTTL', fail))
local old = redis.call('HMGET', code, 'id', 'h', 'exp', 'att')

local r = consume_address(fail, code, tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))

local fail_new = redis.call('GET', fail) or ''
local att_after = redis.call('HGET', code, 'att') or ''
if not old[1] or (att_after == old[4] and fail_new == fail_prev) then
  return {r, {}}
end
return {r, {old[1], old[2], old[3], old[4], att_after, fail_new, fail_prev, fail_prev_ttl}}
