-- issue_address.lua is the address's half of IssueCode in split mode (Redis
-- Cluster): the client-IP and project limits have been taken by take.lua.
--
-- KEYS: code, cool, sent [, mail stream] (one hash slot)
-- ARGV: now, cool_us, sent_t, sent_n, id, hash, exp
--       [, delivery id, address key, project, replaceable-at, sealed job]
-- The mail job is queued when the stream is given; its status, in another
-- slot, is written by status_init.lua in the same pipeline.
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
if KEYS[4] then
  enqueue_job(KEYS[4], nil, now, tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10],
    ARGV[5], ARGV[11], ARGV[12])
end
return {'ok', replaced}
