-- Starts jobs on a worker: takes up to `count` of the oldest ready jobs (after a blocking
-- move, the given id, already in the worker's processing list, first), counts each attempt
-- and renews the worker's lease. The attempt is counted here, at start, so a run lost with its
-- process still counts.
-- A paused queue starts nothing: a job a blocking move took meanwhile goes back to the oldest
-- end of the ready list, and the reply is {'paused'}.
-- ARGV: base, worker, lease_ms, id ('' = none given), count
-- Returns a flat list of {id, args, attempts, max, ready_at_ms} per job, then now_ms last.
local base, worker, lease, given, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local processing = base .. 'proc:' .. worker
redis.call('ZADD', base .. 'leases', now + lease, worker)
if redis.call('EXISTS', base .. 'paused') == 1 then
  if given ~= '' and redis.call('LREM', processing, 1, given) > 0 then
    redis.call('RPUSH', base .. 'ready', given)
  end
  return {'paused'}
end
-- Reaped between the blocking move and this claim: it is no longer ours.
if given ~= '' and not redis.call('LPOS', processing, given) then given = '' end
local out = {}
local claimed = 0
for _ = 1, count + 100 do
  if claimed >= count then break end
  local id = given
  given = ''
  if id == '' then
    id = redis.call('LMOVE', base .. 'ready', processing, 'RIGHT', 'LEFT')
    if not id then break end
  end
  local job = base .. 'job:' .. id
  local fields = redis.call('HMGET', job, 'args', 'max', 'ready_at')
  if fields[1] then
    local attempts = redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('HSET', job, 'state', 'running')
    out[#out + 1] = id
    out[#out + 1] = fields[1]
    out[#out + 1] = attempts
    out[#out + 1] = fields[2]
    out[#out + 1] = fields[3] or now
    claimed = claimed + 1
  else
    -- The job's data is gone (expired or deleted): drop the orphaned id.
    redis.call('LREM', processing, 1, id)
  end
end
out[#out + 1] = now
return out
