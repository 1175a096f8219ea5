-- issue.lua is IssueCode in one script, for a Redis where all its keys may
-- meet (a single server or Sentinel).
--
-- KEYS: ip, project, code, cool, sent [, mail stream, delivery status]
-- ARGV: now, ip_t, ip_n, p_t, p_n, cool_us, sent_t, sent_n, id, hash, exp
--       [, delivery id, address key, project, replaceable-at, sealed job]
-- The mail job is queued when its two keys are given.
-- Reply: {'limit', name, wait [, ip_remaining, ip_reset]} or
--        {'ok', replaced, ip_remaining, ip_reset}
local now = tonumber(ARGV[1])
local ip_t, ip_n = tonumber(ARGV[2]), tonumber(ARGV[3])
local p_t, p_n = tonumber(ARGV[4]), tonumber(ARGV[5])
local cool_us = tonumber(ARGV[6])
local sent_t, sent_n = tonumber(ARGV[7]), tonumber(ARGV[8])

-- Every check before any write: a refused request counts nowhere.
local ok, ip_tat, wait = gcra_check(KEYS[1], now, ip_t, ip_n)
if not ok then
  return {'limit', 'send_per_ip', wait}
end
-- A refusal by a later limit still reports the client-IP limit, as it
-- stands without this request, for the RateLimit-* headers.
local ip_remaining, ip_reset = gcra_state(now, ip_t, ip_n, ip_tat - ip_t)
local p_tat
ok, p_tat, wait = gcra_check(KEYS[2], now, p_t, p_n)
if not ok then
  return {'limit', 'mails_per_project', wait, ip_remaining, ip_reset}
end
local sent_tat, limit
sent_tat, limit, wait = issue_check(KEYS[4], KEYS[5], now, sent_t, sent_n)
if not sent_tat then
  return {'limit', limit, wait, ip_remaining, ip_reset}
end

gcra_set(KEYS[1], now, ip_t, ip_tat)
gcra_set(KEYS[2], now, p_t, p_tat)
local replaced = issue_store(KEYS[3], KEYS[4], KEYS[5], now, cool_us, sent_t, sent_tat,
  ARGV[9], ARGV[10], tonumber(ARGV[11]))
if KEYS[7] then
  enqueue_job(KEYS[6], KEYS[7], now, tonumber(ARGV[11]), ARGV[12], ARGV[13], ARGV[14],
    ARGV[9], ARGV[15], ARGV[16])
end
local remaining, reset = gcra_state(now, ip_t, ip_n, ip_tat)
return {'ok', replaced, remaining, reset}
