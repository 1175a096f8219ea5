-- release.lua gives up a consumer's claims on entries of one stream
-- (MailQueue.Release): each entry still this consumer's gets an idle time
-- of a year, so that the next XAUTOCLAIM of any consumer takes it, however
-- short its claim timeout.
--
-- KEYS: stream
-- ARGV: group, consumer, entry ids...
-- Reply: the number of claims released.
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', 31536000000, 'JUSTID')
    n = n + 1
  end
end
return n
