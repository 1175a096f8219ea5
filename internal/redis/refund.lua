-- refund.lua gives back an event taken by take.lua whose request was then
-- refused by a later limit (split mode).
--
-- KEYS: the limit's key
-- ARGV: now, t
local now, t = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('GET', KEYS[1])
if not v or t <= 0 then
  return 0
end
local tat = tonumber(v) - t
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  gcra_set(KEYS[1], now, t, tat)
end
return 1
