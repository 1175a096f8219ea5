-- finish.lua ends jobs (MailQueue.Finish, FinishAll): each one out of
-- the queue (job_remove), then, if it was still queued, its final
-- status; each job in one step. On a single Redis one call ends the jobs of every partition; on
-- a Redis Cluster one call ends those of one partition (its keys in one
-- hash slot).
--
-- KEYS: per job: mail stream, claims, delivery status
-- ARGV: group, now, then per job: entry id, exp, status, attempts, and
--       1 to write the status (0 for an entry this version cannot read:
--       it has none)
-- Reply: how many statuses were written.
local group, now = ARGV[1], tonumber(ARGV[2])
local written = 0
for i = 0, #KEYS / 3 - 1 do
  local stream, claims, dlv = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local a = 3 + 5 * i
  -- A job finished by another consumer that took it over, or erased, was
  -- no longer queued: its status is not this consumer's to write.
  if job_remove(stream, claims, group, ARGV[a]) and ARGV[a + 4] == '1' then
    status_set(dlv, now, tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3], 0)
    written = written + 1
  end
end
return written
