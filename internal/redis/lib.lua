-- lib.lua is put in front of every other script (see scripts.go): the
-- rules the scripts share. internal/inmem implements the same rules in Go,
-- function for function and under the same names (gcra_check here is
-- gcraCheck there, issue_store is issueStore, ...), in the same order:
-- a change to one is a change to the other.
--
-- Times are integer microseconds since the Unix epoch, passed in by the
-- caller: no script reads the server's clock, so that every instance and
-- every test (with its fake clock) agrees on what "now" is. Key TTLs are set
-- relative to that "now" too; they only reclaim memory, correctness never
-- depends on them.
--
-- A rate is a pair (t, n): a burst of n, then one event every t
-- microseconds. t == 0 turns the limit off.

-- int formats an integer-valued number exactly: tostring keeps only 14
-- significant digits, fewer than a time in microseconds has.
local function int(x)
  return string.format('%d', x)
end

-- ms turns a duration in microseconds into a PEXPIRE argument: rounded up,
-- at least 1.
local function ms(us)
  local m = math.ceil(us / 1000)
  if m < 1 then
    m = 1
  end
  return int(m)
end

-- skew is how far out of order callers' clocks may be: each request's
-- time is taken before it reaches Redis, by one of several instances. A
-- request stamped up to skew earlier than one already counted is judged
-- as if it came at the same time, so the last place of a burst is not
-- lost to the disorder. Never above half an interval, so a burst at one
-- instant still gets exactly n.
local function skew(t)
  return math.min(250000, math.floor(t / 2))
end

-- gcra_check reports whether one more event fits the limit of key at now.
-- When it does it also returns the bucket's new theoretical arrival time,
-- for gcra_set; when it does not, the wait until it would. It changes
-- nothing: a refused request must count nowhere.
local function gcra_check(key, now, t, n)
  if t <= 0 then
    return true, 0, 0
  end
  local tat = now
  local v = redis.call('GET', key)
  if v then
    tat = tonumber(v)
    if tat < now then
      tat = now
    end
  end
  local new = tat + t
  if new - now > n * t + skew(t) then
    return false, tat, new - now - n * t
  end
  return true, new, 0
end

-- gcra_set stores an accepted event. The key expires when the bucket is
-- full again, when a missing key means the same thing.
local function gcra_set(key, now, t, tat)
  if t > 0 then
    redis.call('SET', key, int(tat), 'PX', ms(tat - now))
  end
end

-- gcra_state returns what is left of a limit after an accepted event, and
-- the time until the bucket is full again.
local function gcra_state(now, t, n, tat)
  if t <= 0 then
    return 0, 0
  end
  local reset = tat - now
  return math.max(0, math.floor((n * t - reset) / t)), reset
end

-- gcra_refund gives back one event of a limit (refund.lua, on a Redis
-- Cluster: the request was refused after its limits were taken): the
-- bucket's theoretical arrival time goes back by one interval. inmem has
-- no counterpart: in one process the limits are never taken apart from
-- the address's checks.
local function gcra_refund(key, now, t)
  local v = redis.call('GET', key)
  if not v or t <= 0 then
    return 0
  end
  local tat = tonumber(v) - t
  if tat <= now then
    redis.call('DEL', key)
  else
    gcra_set(key, now, t, tat)
  end
  return 1
end

-- The limits that live outside the address's hash slot (the client IP's,
-- the project's) come first in issue.lua's and consume.lua's keys:
-- KEYS[1..count], each with its (name, t, n) in ARGV from index at. On a
-- single Redis the scripts are given them; on a Redis Cluster count is 0
-- (take.lua has taken them, each in its own slot, before the script runs).

-- limits_check checks each limit in order. It returns the new arrival
-- times of those that let the request through, and when one refused, its
-- name and the wait. It changes nothing.
local function limits_check(count, at, now)
  local tats = {}
  for i = 1, count do
    local a = at + 3 * (i - 1)
    local ok, tat, wait = gcra_check(KEYS[i], now, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
    if not ok then
      return tats, ARGV[a], wait
    end
    tats[i] = tat
  end
  return tats
end

-- limits_set counts the request against each limit.
local function limits_set(count, at, now, tats)
  for i = 1, count do
    local a = at + 3 * (i - 1)
    gcra_set(KEYS[i], now, tonumber(ARGV[a + 1]), tats[i])
  end
end

-- limits_state returns the first limit's state after the request (the
-- client IP's, for the RateLimit-* headers), 0, 0 when there is none.
local function limits_state(count, at, now, tats)
  if count == 0 then
    return 0, 0
  end
  return gcra_state(now, tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tats[1])
end

-- limits_states returns every limit's state after the request, in order:
-- {remaining, reset, remaining, reset, ...} (the mail budgets are read
-- from it too).
local function limits_states(count, at, now, tats)
  local out = {}
  for i = 1, count do
    local a = at + 3 * (i - 1)
    local remaining, reset = gcra_state(now, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tats[i])
    out[2 * i - 1], out[2 * i] = remaining, reset
  end
  return out
end

-- refusal is the reply of a refused request: {'limit', name, wait}, and
-- when limits let it through before one refused (tats holds theirs), the
-- first one's state as it stands without this request: {..., remaining,
-- reset}, for the RateLimit-* headers.
local function refusal(name, wait, at, now, tats)
  if #tats == 0 then
    return {'limit', name, wait}
  end
  local t, n = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local remaining, reset = gcra_state(now, t, n, tats[1] - t)
  return {'limit', name, wait, remaining, reset}
end

-- issue_check checks the address's side of IssueCode: the resend cooldown
-- of (project, address), then the codes per address (all projects). It
-- returns the codes-per-address limit's new arrival time, or nil, the
-- name of the refusing limit and the wait. It changes nothing.
local function issue_check(cool, sent, now, sent_t, sent_n)
  local until_ = redis.call('GET', cool)
  if until_ and tonumber(until_) > now then
    return nil, 'cooldown', tonumber(until_) - now
  end
  local ok, tat, wait = gcra_check(sent, now, sent_t, sent_n)
  if not ok then
    return nil, 'codes_per_address', wait
  end
  return tat
end

-- issue_store stores the new code, replacing any other, starts the
-- cooldown and counts the code against the address. It returns 1 when a
-- live code was replaced.
local function issue_store(code, cool, sent, now, cool_us, sent_t, sent_tat, id, hash, exp)
  local replaced = 0
  local old = redis.call('HGET', code, 'exp')
  if old and tonumber(old) > now then
    replaced = 1
  end
  -- Every field is written: nothing of the old code survives.
  redis.call('HSET', code, 'id', id, 'h', hash, 'exp', int(exp), 'att', '0')
  redis.call('PEXPIRE', code, ms(exp - now))
  if cool_us > 0 then
    redis.call('SET', cool, int(now + cool_us), 'PX', ms(cool_us))
  end
  gcra_set(sent, now, sent_t, sent_tat)
  return replaced
end

-- equal_ct compares two strings in a time that depends only on their
-- lengths: how long a wrong guess takes says nothing of how close it was.
local function equal_ct(a, b)
  if #a ~= #b then
    return false
  end
  local d = 0
  for i = 1, #a do
    d = bit.bor(d, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  return d == 0
end

-- consume_address is the address's side of ConsumeCode: the failure
-- budget, then the comparison. Replies:
--   {'limit', 'failures_per_address', wait}
--   {'invalid', reason}   reason: expired, burnt or wrong (metrics only)
--   {'ok', id, hash, exp, attempts}
local function consume_address(fail, code, now, fail_t, fail_n, hash, max_att)
  local ok, fail_tat, wait = gcra_check(fail, now, fail_t, fail_n)
  if not ok then
    return {'limit', 'failures_per_address', wait}
  end
  local rec = redis.call('HMGET', code, 'id', 'h', 'exp', 'att')
  if not rec[1] or tonumber(rec[3]) <= now then
    -- Missing, used, dead or expired: not a try against a live code, so
    -- it costs the address nothing.
    return {'invalid', 'expired'}
  end
  local att = tonumber(rec[4])
  if max_att > 0 and att >= max_att then
    -- Dead under a lower limit than the one it was tried under.
    redis.call('DEL', code)
    return {'invalid', 'burnt'}
  end
  if equal_ct(rec[2], hash) then
    redis.call('DEL', code)
    return {'ok', rec[1], rec[2], tonumber(rec[3]), att}
  end
  att = att + 1
  local reason = 'wrong'
  if max_att > 0 and att >= max_att then
    redis.call('DEL', code)
    reason = 'burnt'
  else
    redis.call('HSET', code, 'att', int(att))
  end
  gcra_set(fail, now, fail_t, fail_tat)
  return {'invalid', reason}
end

-- restore_code puts back a code record that was deleted, unless another
-- record of (project, address) is there now (it was issued later, so it
-- wins) or the code has expired. It returns 1 when restored.
local function restore_code(code, now, id, hash, exp, att)
  if exp <= now or redis.call('EXISTS', code) == 1 then
    return 0
  end
  redis.call('HSET', code, 'id', id, 'h', hash, 'exp', int(exp), 'att', att)
  redis.call('PEXPIRE', code, ms(exp - now))
  return 1
end

-- The mail queue. Each of the 64 partitions has, under its hash tag, the
-- stream of its mail jobs (P{a:B}:mail, read through one consumer group),
-- the sorted set of their claims (P{a:B}:claims: entry id -> when, by
-- the callers' clock, it was claimed or last renewed) and the delivery
-- statuses of its mails (P{a:B}:dlv:<delivery id>).

-- status_set writes a delivery's status, kept until its code expires (exp):
-- for as long as the code lives, and no longer. A code that has expired
-- has no status left. A delivery's exp never changes (its job's), so a
-- status that had all four fields already has its TTL: HSET adding none
-- spares the PEXPIRE, a fifth of finishing a job.
local function status_set(key, now, exp, st, attempts, next_)
  if exp <= now then
    redis.call('DEL', key)
    return
  end
  if redis.call('HSET', key, 'st', st, 'n', attempts, 'next', next_, 'exp', int(exp)) > 0 then
    redis.call('PEXPIRE', key, ms(exp - now))
  end
end

-- enqueue_job adds a code's mail job to its partition's stream and writes
-- its status "queued". The job's fields: d delivery id, a address key,
-- m mailbox key, p project, c code id, e code expiry, r replaceable-at,
-- s the sealed message, t when it was queued.
local function enqueue_job(stream, dlv, now, exp, dlv_id, addr, mailbox, project, code_id, repl, sealed)
  redis.call('XADD', stream, '*', 'd', dlv_id, 'a', addr, 'm', mailbox, 'p', project, 'c', code_id,
    'e', int(exp), 'r', repl, 's', sealed, 't', int(now))
  status_set(dlv, now, exp, 'queued', 0, 0)
end

-- job_queued reports whether the entry id is still in the stream: a job
-- finished (by another consumer that took it over) or erased is not, and
-- its status is no longer any consumer's to write.
local function job_queued(stream, id)
  return #redis.call('XRANGE', stream, id, id) == 1
end

-- claimed_by reports whether consumer holds the claim on entry id.
local function claimed_by(stream, group, id, consumer)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1, consumer)
  return type(p) == 'table' and not p.err and #p == 1
end

-- job_remove takes a finished job out of the queue: out of the group's
-- pending entries (no group: nothing pending), the stream (its sealed
-- message leaves Redis) and the claims. It reports whether the entry was
-- still in the stream (job_queued, without a read of its own).
local function job_remove(stream, claims, group, id)
  redis.pcall('XACK', stream, group, id)
  local queued = redis.call('XDEL', stream, id) == 1
  redis.call('ZREM', claims, id)
  return queued
end
