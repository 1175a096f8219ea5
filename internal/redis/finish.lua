-- finish.lua ends a job (MailQueue.Finish): its final status, then the job
-- out of the queue (job_remove), in one step in the job's partition.
--
-- KEYS: mail stream, claims [, delivery status] (one hash slot; no status
--       for an entry this version cannot read)
-- ARGV: group, entry id, now, exp, status, attempts
-- Reply: 1 when the status was written.
local stream, claims, dlv = KEYS[1], KEYS[2], KEYS[3]
local group, id = ARGV[1], ARGV[2]
local written = 0
if dlv and job_queued(stream, id) then
  status_set(dlv, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6], 0)
  written = 1
end
job_remove(stream, claims, group, id)
return written
