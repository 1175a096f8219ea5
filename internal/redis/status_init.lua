-- status_init.lua writes a new delivery's status "queued" in split mode,
-- pipelined with issue_address.lua. Only if absent: the worker may already
-- have written a later status.
--
-- KEYS: delivery status
-- ARGV: now, exp
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
status_set(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 'queued', 0, 0)
return 1
