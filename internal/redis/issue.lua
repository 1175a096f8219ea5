-- issue.lua is IssueCode (inmem: CodeStore.IssueCode), the same script on
-- every kind of Redis. On a single Redis or Sentinel it is given the
-- client-IP, mails-in-total and project limits before the address's keys
-- and does
-- everything in one round trip. On a Redis Cluster those limits live in
-- other hash slots: take.lua has taken them already and this script is
-- given none (split.go). Either way the address's side is all or nothing:
-- every check, then every write, the mail job and its status included.
--
-- KEYS: [ip, total, project,] code, cool, sent [, mail stream, delivery status]
--       (sent: the mailbox's budget, which the inbox's aliases share)
-- ARGV: now, count (of limits), [name, t, n per limit,]
--       cool_us, sent_t, sent_n, id, hash, exp
--       [, delivery id, address key, mailbox key, project, replaceable-at,
--       sealed job]
-- The mail job is queued when its two keys are given.
-- Reply: {'limit', name, wait [, first_remaining, first_reset]} (nothing
--        written) or {'ok', replaced, then remaining, reset of each limit}.
local now, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = 3
local c, a = count, at + 3 * count -- the address's first key and argument follow

-- Every check before any write: a refused request counts nowhere.
local tats, name, wait = limits_check(count, at, now)
if name then
  return refusal(name, wait, at, now, tats)
end
local code, cool, sent = KEYS[c + 1], KEYS[c + 2], KEYS[c + 3]
local cool_us, sent_t, sent_n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
local id, hash, exp = ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5])
local sent_tat
sent_tat, name, wait = issue_check(cool, sent, now, sent_t, sent_n)
if not sent_tat then
  return refusal(name, wait, at, now, tats)
end

limits_set(count, at, now, tats)
local replaced = issue_store(code, cool, sent, now, cool_us, sent_t, sent_tat, id, hash, exp)
if KEYS[c + 5] then
  enqueue_job(KEYS[c + 4], KEYS[c + 5], now, exp, ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9],
    id, ARGV[a + 10], ARGV[a + 11])
end
local r = limits_states(count, at, now, tats)
table.insert(r, 1, replaced)
table.insert(r, 1, 'ok')
return r
