-- status.lua records a delivery's status (MailQueue.Retrying, Finish).
--
-- KEYS: delivery status
-- ARGV: now, exp, status, attempts, next attempt (microseconds, 0: none)
local now, exp = tonumber(ARGV[1]), tonumber(ARGV[2])
if exp <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
status_set(KEYS[1], now, exp, ARGV[3], ARGV[4], ARGV[5])
return 1
