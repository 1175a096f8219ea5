-- issue_address.lua is the address's half of IssueCode in split mode (Redis
-- Cluster), pipelined with take.lua for the client-IP and project limits and
-- status_init.lua for the delivery status, each in its own slot.
--
-- KEYS: code, cool, sent [, mail stream] (one hash slot)
-- ARGV: now, cool_us, sent_t, sent_n, id, hash, exp
--       [, delivery id, address key, project, replaceable-at, sealed job]
-- The mail job is queued when the stream is given.
-- Reply: {'limit', name, wait} (nothing written), or
--        {'ok', replaced, undo...}: undo is what undo_issue.lua needs to
--        take this back if another slot refused the request: what it wrote
--        and what that overwrote, as strings ('' for a missing key):
--        cool_new, cool_prev, cool_prev_ttl, sent_new, sent_prev,
--        sent_prev_ttl, code_prev_id, code_prev_hash, code_prev_exp,
--        code_prev_att, code_prev_ttl, entry id.
local now = tonumber(ARGV[1])
local cool_us = tonumber(ARGV[2])
local sent_t, sent_n = tonumber(ARGV[3]), tonumber(ARGV[4])

local sent_tat, limit, wait = issue_check(KEYS[2], KEYS[3], now, sent_t, sent_n)
if not sent_tat then
  return {'limit', limit, wait}
end

local function str(key)
  return redis.call('GET', key) or '', int(redis.call('PTTL', key))
end
local cool_prev, cool_prev_ttl = str(KEYS[2])
local sent_prev, sent_prev_ttl = str(KEYS[3])
local old = redis.call('HMGET', KEYS[1], 'id', 'h', 'exp', 'att')
local old_ttl = int(redis.call('PTTL', KEYS[1]))

local replaced = issue_store(KEYS[1], KEYS[2], KEYS[3], now, cool_us, sent_t, sent_tat,
  ARGV[5], ARGV[6], tonumber(ARGV[7]))
local entry = ''
if KEYS[4] then
  entry = enqueue_job(KEYS[4], nil, now, tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10],
    ARGV[5], ARGV[11], ARGV[12])
end

local cool_new, sent_new = '', ''
if cool_us > 0 then
  cool_new = int(now + cool_us)
end
if sent_t > 0 then
  sent_new = int(sent_tat)
end
return {'ok', replaced,
  cool_new, cool_prev, cool_prev_ttl,
  sent_new, sent_prev, sent_prev_ttl,
  old[1] or '', old[2] or '', old[3] or '', old[4] or '', old_ttl,
  entry}
