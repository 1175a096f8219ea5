-- consume.lua is ConsumeCode in one script, for a Redis where all its keys
-- may meet (a single server or Sentinel).
--
-- KEYS: ip, fail, code
-- ARGV: now, ip_t, ip_n, fail_t, fail_n, hash, max_attempts
-- Reply: {'limit', 'verify_per_ip', wait}, or {ip_remaining, ip_reset}
-- followed by consume_address's reply.
local now = tonumber(ARGV[1])
local ip_t, ip_n = tonumber(ARGV[2]), tonumber(ARGV[3])

local ok, ip_tat, wait = gcra_check(KEYS[1], now, ip_t, ip_n)
if not ok then
  return {'limit', 'verify_per_ip', wait}
end
-- The IP pays for every try it is allowed, whatever the outcome.
gcra_set(KEYS[1], now, ip_t, ip_tat)
local remaining, reset = gcra_state(now, ip_t, ip_n, ip_tat)

local r = consume_address(KEYS[2], KEYS[3], now, tonumber(ARGV[4]), tonumber(ARGV[5]),
  ARGV[6], tonumber(ARGV[7]))
table.insert(r, 1, reset)
table.insert(r, 1, remaining)
return r
