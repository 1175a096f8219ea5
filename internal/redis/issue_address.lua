-- issue_address.lua is the address's half of IssueCode in split mode (Redis
-- Cluster): the client-IP and project limits have been taken by take.lua.
--
-- KEYS: code, cool, sent (one hash slot)
-- ARGV: now, cool_us, sent_t, sent_n, id, hash, exp
-- Reply: {'limit', name, wait} or {'ok', replaced}
local now = tonumber(ARGV[1])
local cool_us = tonumber(ARGV[2])
local sent_t, sent_n = tonumber(ARGV[3]), tonumber(ARGV[4])

local sent_tat, limit, wait = issue_check(KEYS[2], KEYS[3], now, sent_t, sent_n)
if not sent_tat then
  return {'limit', limit, wait}
end
local replaced = issue_store(KEYS[1], KEYS[2], KEYS[3], now, cool_us, sent_t, sent_tat,
  ARGV[5], ARGV[6], tonumber(ARGV[7]))
return {'ok', replaced}
