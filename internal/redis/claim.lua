-- claim.lua claims mail jobs for a consumer (MailQueue.Claim; inmem:
-- CodeStore.Claim): entries never claimed first, then lapsed claims, from
-- the streams it is given: all 64 at once on a single Redis, one per call
-- (pipelined) on a Redis Cluster. It never blocks.
--
-- Claims age by the callers' clock, not by Redis's: each stream's claims
-- set holds when (caller time) each entry was claimed or last renewed
-- (extend.lua); a claim lapses once that is claim timeout ago. The
-- group's pending list keeps who holds each entry, so that XACK, XCLAIM
-- and the pending list's delivery counts stay right.
--
-- KEYS: mail stream, claims [, mail stream, claims, ...]
-- ARGV: group, consumer, n, now, claim timeout (microseconds), lapsed
--       (1: look for lapsed claims too), the stream to start that from
--       (1-based: the caller turns it, so that no stream waits behind
--       busier ones)
-- Reply: {new, lapsed, next}: new and lapsed each a list of {stream,
--        entry id, {field, value, ...}}, one for each entry claimed (up to
--        n in all, new ones first); next, when lapsed
--        claims were looked for, the earliest claim time left that has not
--        lapsed ('' for none): no claim lapses before next + timeout.
local group, consumer = ARGV[1], ARGV[2]
local n, now, timeout = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local look_lapsed, start = ARGV[6] == '1', tonumber(ARGV[7])
local streams = #KEYS / 2
local new, lapsed, next_ = {}, {}, nil

-- claim_new claims up to n entries the group has never handed out, in
-- all, reading the streams in turn from start: no stream waits behind
-- busier ones, and no consumer takes more than it asked for while others
-- idle. The group is made on first use, from id 0: jobs queued before it
-- are read too.
local function claim_new()
  for i = 0, streams - 1 do
    if #new >= n then
      return
    end
    local j = 2 * ((start - 1 + i) % streams) + 1
    local stream, claims = KEYS[j], KEYS[j + 1]
    local read = {'XREADGROUP', 'GROUP', group, consumer, 'COUNT', n - #new, 'STREAMS', stream, '>'}
    local r = redis.pcall(unpack(read))
    if type(r) == 'table' and r.err then
      if not string.find(r.err, 'NOGROUP', 1, true) then
        error(r)
      end
      redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM') -- BUSYGROUP: it was there
      r = redis.call(unpack(read))
    end
    for _, st in ipairs(r or {}) do
      -- One ZADD for up to 1000 of the stream's entries, not one each
      -- (unpack takes a few thousand values at most).
      local at, zadd = int(now), {'ZADD', claims}
      for _, e in ipairs(st[2]) do
        zadd[#zadd + 1], zadd[#zadd + 2] = at, e[1]
        table.insert(new, {stream, e[1], e[2]})
        if #zadd >= 2002 then
          redis.call(unpack(zadd))
          zadd = {'ZADD', claims}
        end
      end
      if #zadd > 2 then
        redis.call(unpack(zadd))
      end
    end
  end
end

-- adopt_unrecorded gives a claim time to pending entries that have none:
-- claims made by an older version of authd (which aged them by Redis's
-- idle time) are aged from their idle time once, by the callers' clock
-- from then on. Entries claimed by this version always have one, so
-- there is nothing to do while the pending list is no longer than the set.
local function adopt_unrecorded(stream, claims)
  local p = redis.pcall('XPENDING', stream, group)
  if type(p) ~= 'table' or p.err or p[1] <= redis.call('ZCARD', claims) then
    return
  end
  for _, e in ipairs(redis.call('XPENDING', stream, group, '-', '+', math.min(p[1], 1000))) do
    redis.call('ZADD', claims, 'NX', int(now - e[3] * 1000), e[1])
  end
end

-- claim_lapsed takes over up to k claims of one stream not renewed for
-- the claim timeout (or released), earliest first, and notes the earliest
-- claim time it leaves (lapsed or not, when there was no room for it). An entry finished or erased since has
-- nothing to take over: it leaves the set.
local function claim_lapsed(stream, claims, k)
  adopt_unrecorded(stream, claims)
  local cutoff = now - timeout
  local r = redis.call('ZRANGEBYSCORE', claims, '-inf', '+inf', 'WITHSCORES', 'LIMIT', 0, k + 1)
  for i = 1, #r, 2 do
    local id, at = r[i], tonumber(r[i + 1])
    if at > cutoff or #new + #lapsed >= n then
      if not next_ or at < next_ then
        next_ = at
      end
      return
    end
    local e = redis.pcall('XCLAIM', stream, group, consumer, 0, id)
    if type(e) == 'table' and not e.err and e[1] and e[1][2] then
      redis.call('ZADD', claims, int(now), id)
      table.insert(lapsed, {stream, id, e[1][2]})
    else
      redis.call('ZREM', claims, id)
    end
  end
  if #r == 2 * (k + 1) then
    -- More may have lapsed past this page: look again next time.
    next_ = math.min(next_ or cutoff, cutoff)
  end
end

claim_new()
if look_lapsed then
  for i = 0, streams - 1 do
    local j = 2 * ((start - 1 + i) % streams) + 1
    claim_lapsed(KEYS[j], KEYS[j + 1], math.max(n - #new - #lapsed, 0))
  end
  -- The claims just made lapse last of all.
  if (#new > 0 or #lapsed > 0) and (not next_ or now < next_) then
    next_ = now
  end
end
local next_reply = ''
if next_ then
  next_reply = int(next_)
end
return {new, lapsed, next_reply}
