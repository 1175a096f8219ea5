-- restore.lua puts back a consumed code (RestoreCode). Any record of
-- (project, address) present now was issued after the consumed one (which
-- was deleted), so it wins; an expired code is not worth restoring.
--
-- KEYS: code
-- ARGV: now, id, hash, exp, attempts
-- Reply: 1 when restored, 0 when not.
local now, exp = tonumber(ARGV[1]), tonumber(ARGV[4])
if exp <= now or redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'h', ARGV[3], 'exp', int(exp), 'att', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ms(exp - now))
return 1
