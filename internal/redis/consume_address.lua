-- consume_address.lua is the address's half of ConsumeCode in split mode
-- (Redis Cluster): the client-IP limit has been taken by take.lua.
--
-- KEYS: fail, code (one hash slot)
-- ARGV: now, fail_t, fail_n, hash, max_attempts
-- Reply: see consume_address in lib.lua.
return consume_address(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))
