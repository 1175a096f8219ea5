-- status.lua records a delivery's status while its job waits to be tried
-- again (MailQueue.Retrying), in the job's partition.
--
-- KEYS: mail stream, delivery status (one hash slot)
-- ARGV: entry id, now, exp, status, attempts, next attempt (microseconds)
-- Reply: 1 when written, 0 when the job is no longer queued.
if not job_queued(KEYS[1], ARGV[1]) then
  return 0
end
status_set(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6])
return 1
