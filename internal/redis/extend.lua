-- extend.lua renews a consumer's claims on entries of one stream
-- (MailQueue.Extend): XCLAIM with min-idle 0 resets an entry's idle time,
-- but would also steal it from whoever took it over, so each entry is
-- first checked to still be this consumer's.
--
-- KEYS: stream
-- ARGV: group, consumer, entry ids...
-- Reply: the number of claims renewed.
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
