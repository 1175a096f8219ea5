-- undo_issue.lua takes back what issue_address.lua did for a request that
-- another slot refused (split mode), so that the refusal changes nothing:
-- the code record and the cooldown get back exactly what they held, unless
-- the code is no longer the one this request stored (a newer request won,
-- or the code was used: theirs stays); the codes-per-address event is given
-- back (see gcra_undo); the mail job leaves the stream.
--
-- KEYS: code, cool, sent, mail stream (one hash slot)
-- ARGV: now, id (the code this request stored), sent_t, then
--       issue_address.lua's undo values.
-- Reply: 1 when the code was put back as it was, 0 when a newer one stays.
local now, id, sent_t = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local cool_new, cool_prev, cool_prev_ttl = ARGV[4], ARGV[5], ARGV[6]
local sent_new, sent_prev, sent_prev_ttl = ARGV[7], ARGV[8], ARGV[9]
local prev_id, prev_h, prev_exp, prev_att, prev_ttl = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
local entry = ARGV[15]

if sent_new ~= '' then
  gcra_undo(KEYS[3], now, sent_t, sent_new, sent_prev, sent_prev_ttl)
end
if entry ~= '' then
  redis.call('XDEL', KEYS[4], entry)
end
if redis.call('HGET', KEYS[1], 'id') ~= id then
  return 0
end
redis.call('DEL', KEYS[1])
if prev_id ~= '' then
  redis.call('HSET', KEYS[1], 'id', prev_id, 'h', prev_h, 'exp', prev_exp, 'att', prev_att)
  if tonumber(prev_ttl) > 0 then
    redis.call('PEXPIRE', KEYS[1], prev_ttl)
  end
end
-- The cooldown is (project, address)'s, like the code: while the code is
-- this request's, so is the cooldown.
if cool_new ~= '' and redis.call('GET', KEYS[2]) == cool_new then
  put_back(KEYS[2], cool_prev, cool_prev_ttl)
end
return 1
