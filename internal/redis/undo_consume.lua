-- undo_consume.lua takes back a try of consume_address.lua whose client IP
-- was refused (split mode): in single mode such a try is never made. The
-- code is put back if it was deleted (restore_code: not over a newer code)
-- or gets its attempts back if they are still this try's count; the
-- failure counted is given back (see gcra_undo).
--
-- KEYS: fail, code (one hash slot)
-- ARGV: now, fail_t, then consume_address.lua's undo values.
local now, fail_t = tonumber(ARGV[1]), tonumber(ARGV[2])
local id, hash, exp, att = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local att_after = ARGV[7]
local fail_new, fail_prev, fail_prev_ttl = ARGV[8], ARGV[9], ARGV[10]

if fail_new ~= fail_prev then
  gcra_undo(KEYS[1], now, fail_t, fail_new, fail_prev, fail_prev_ttl)
end
if att_after == '' then
  restore_code(KEYS[2], now, id, hash, exp, att)
else
  local cur = redis.call('HMGET', KEYS[2], 'id', 'att')
  if cur[1] == id and cur[2] == att_after then
    redis.call('HSET', KEYS[2], 'att', att)
  end
end
return 1
