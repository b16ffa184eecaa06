-- Adds jobs unless a job with the same id is already waiting or running (so a re-push by the
-- outbox relay, or a retried request, is a no-op). A finished job ('done', 'dead') with that id
-- is replaced: the producer's record says the job must run again (an operator's retry), and
-- that record also stops a job that already ran from running twice.
-- ARGV: base, then per job: id, args, max_attempts, due_ms (0 = now), attempts already used
-- (0 for a new job; more when a job Redis lost is pushed again).
-- Returns how many jobs were added.
local base = ARGV[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local added = 0
for i = 2, #ARGV, 5 do
  local id, args, max, due, used = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local job = base .. 'job:' .. id
  local state = redis.call('HGET', job, 'state')
  if state == 'done' or state == 'dead' then
    redis.call('DEL', job)
    redis.call('ZREM', base .. 'dead', id)
    state = false
  end
  if not state and redis.call('EXISTS', job) == 0 then
    if due > now then
      redis.call('HSET', job, 'args', args, 'attempts', used, 'max', max, 'state', 'delayed', 'ready_at', due)
      redis.call('ZADD', base .. 'delayed', due, id)
    else
      redis.call('HSET', job, 'args', args, 'attempts', used, 'max', max, 'state', 'ready', 'ready_at', now)
      redis.call('LPUSH', base .. 'ready', id)
    end
    added = added + 1
  end
end
return added
