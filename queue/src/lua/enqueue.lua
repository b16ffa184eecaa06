-- Adds jobs unless a job with the same id is already waiting or running (so a re-push by the
-- outbox relay, or a retried request, is a no-op). A finished job ('done', 'dead') with that id
-- is replaced: the producer's record says the job must run again (an operator's retry), and
-- that record also stops a job that already ran from running twice.
-- ARGV: base, then per job: id, args, max_attempts, due_ms (0 = now), attempts already used
-- (0 for a new job; more when a job Redis lost is pushed again).
-- Returns how many jobs were added.
local now = now_ms()
local ids = {}
for i = 2, #ARGV, 5 do ids[#ids + 1] = ARGV[i] end
local states = read('state', ids)
local replaced, taken, added = {}, {}, {}
local args, max, attempts, state, ready_at = {}, {}, {}, {}, {}
local runnable, scheduled = {}, {}
for n, id in ipairs(ids) do
  local i = 2 + (n - 1) * 5
  local current = states[n]
  if current == 'done' or current == 'dead' then
    replaced[#replaced + 1] = id
    current = false
  end
  -- The same id twice in one push is one job.
  if not current and not taken[id] then
    taken[id] = true
    added[#added + 1] = id
    local due = tonumber(ARGV[i + 3])
    local at, now_or_later = now, 'ready'
    if due > now then at, now_or_later = due, 'delayed' end
    push_pair(args, id, ARGV[i + 1])
    push_pair(max, id, ARGV[i + 2])
    push_pair(attempts, id, ARGV[i + 4])
    push_pair(state, id, now_or_later)
    push_pair(ready_at, id, at)
    if now_or_later == 'ready' then
      runnable[#runnable + 1] = id
    else
      push_pair(scheduled, due, id)
    end
  end
end
drop_jobs(replaced)
write('args', args)
write('max', max)
write('attempts', attempts)
write('state', state)
write('ready_at', ready_at)
-- An id left in a finished index by a partial loss (its state evicted) must not age this
-- new job out.
each_chunk('ZREM', finished, added)
each_chunk('ZREM', dead, added)
each_chunk('LPUSH', ready, runnable)
each_chunk('ZADD', delayed, scheduled)
return #added
