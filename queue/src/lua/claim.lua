-- Starts jobs on a worker: takes up to `count` of the oldest ready jobs (after a blocking
-- move, the given id, already in the worker's processing list, first), counts each attempt
-- and renews the worker's lease. The attempt is counted here, at start, so a run lost with its
-- process still counts.
-- A paused queue starts nothing: a job a blocking move took meanwhile goes back to the oldest
-- end of the ready list, and the reply is {'paused'}.
-- ARGV: base, worker, lease_ms, id ('' = none given), count
-- Returns a flat list of {id, args, attempts, max, ready_at_ms} per job, then now_ms last.
local worker, lease, given, count = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local processing = base .. 'proc:' .. worker
redis.call('ZADD', leases, now + lease, worker)
if redis.call('EXISTS', base .. 'paused') == 1 then
  if given ~= '' and redis.call('LREM', processing, 1, given) > 0 then
    redis.call('RPUSH', ready, given)
  end
  return {'paused'}
end
local out, attempts, running = {}, {}, {}
local claimed = 0
-- Starts those of `ids` (already in the processing list) whose data Redis holds; drops the
-- others, whose data is gone (expired or deleted).
local function start(ids)
  local args, used = read('args', ids), read('attempts', ids)
  local max, ready_at = read('max', ids), read('ready_at', ids)
  local orphans = {}
  for i, id in ipairs(ids) do
    if not args[i] and adopt_legacy(id) then
      args[i], used[i] = redis.call('HGET', fields.args, id), redis.call('HGET', fields.attempts, id)
      max[i], ready_at[i] = redis.call('HGET', fields.max, id), redis.call('HGET', fields.ready_at, id)
    end
    if args[i] then
      local attempt = (tonumber(used[i]) or 0) + 1
      push_pair(attempts, id, attempt)
      push_pair(running, id, 'running')
      out[#out + 1] = id
      out[#out + 1] = args[i]
      out[#out + 1] = attempt
      out[#out + 1] = max[i]
      out[#out + 1] = ready_at[i] or now
      claimed = claimed + 1
    else
      orphans[#orphans + 1] = id
      redis.call('LREM', processing, 1, id)
    end
  end
  drop_jobs(orphans)
end
-- Reaped between the blocking move and this claim: it is no longer ours.
if given ~= '' and redis.call('LPOS', processing, given) then start({given}) end
-- Orphans (rare) make a batch start fewer jobs than it took: take again, a few times at most.
for _ = 1, 4 do
  local want = count - claimed
  if want <= 0 then break end
  local ids = {}
  if want == 1 then
    local id = redis.call('LMOVE', ready, processing, 'RIGHT', 'LEFT')
    if not id then break end
    ids[1] = id
  else
    -- The oldest jobs are at the right end; the list comes back newest first.
    local taken = redis.call('LRANGE', ready, -want, -1)
    if #taken == 0 then break end
    redis.call('LTRIM', ready, 0, -#taken - 1)
    for i = #taken, 1, -1 do ids[#ids + 1] = taken[i] end
    -- Pushed oldest first, as one move at a time would: the oldest ends nearest the tail.
    each_chunk('LPUSH', processing, ids)
  end
  start(ids)
end
write('attempts', attempts)
write('state', running)
out[#out + 1] = now
return out
