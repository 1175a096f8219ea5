-- restore.lua puts back a consumed code (RestoreCode). Any record of
-- (project, address) present now was issued after the consumed one (which
-- was deleted), so it wins; an expired code is not worth restoring.
--
-- KEYS: code
-- ARGV: now, id, hash, exp, attempts
-- Reply: 1 when restored, 0 when not.
return restore_code(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5])
