-- release.lua gives up a consumer's claims on entries of one stream
-- (MailQueue.Release): each entry still this consumer's gets a claim
-- time of -inf, so that the next claim.lua of any consumer takes it as
-- lapsed, however short its claim timeout (and an idle time of a year,
-- for older versions of authd).
--
-- KEYS: mail stream, claims
-- ARGV: group, consumer, entry ids...
-- Reply: the number of claims released.
local stream, claims = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV do
  if claimed_by(stream, group, ARGV[i], consumer) then
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'IDLE', 31536000000, 'JUSTID')
    redis.call('ZADD', claims, '-inf', ARGV[i])
    n = n + 1
  end
end
return n
