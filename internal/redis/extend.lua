-- extend.lua renews a consumer's claims on entries of one stream
-- (MailQueue.Extend): each entry still this consumer's gets now as its
-- claim's time. XCLAIM with min-idle 0 resets the entry's idle time too,
-- for older versions of authd, which age claims by it.
--
-- KEYS: mail stream, claims
-- ARGV: group, consumer, now, entry ids...
-- Reply: the number of claims renewed.
local stream, claims = KEYS[1], KEYS[2]
local group, consumer, now = ARGV[1], ARGV[2], ARGV[3]
local n = 0
for i = 4, #ARGV do
  if claimed_by(stream, group, ARGV[i], consumer) then
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
    redis.call('ZADD', claims, now, ARGV[i])
    n = n + 1
  end
end
return n
