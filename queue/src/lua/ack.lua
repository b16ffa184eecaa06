-- Settles finished attempts, any number per call: each one done, retried later, or dead. A
-- worker whose lease expired had its jobs re-queued; its late acks find nothing in its list
-- and change nothing.
-- ARGV: base, worker, dead_cap, then per job: id, outcome ('done' | 'retry' | 'dead'),
--       delay_ms, error
-- Returns, per job in order, 1 when settled or 0 when it was no longer this worker's.
local worker, dead_cap = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local processing = base .. 'proc:' .. worker
local ids = {}
for i = 4, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end

-- Take the jobs out of the worker's list. One LREM per job when they are few, or few against
-- the list; otherwise the list is read once and written back without them.
local held = {}
local few = #ids <= 4
local length = few and 0 or redis.call('LLEN', processing)
if few or #ids * 4 < length then
  for _, id in ipairs(ids) do
    -- Jobs are claimed onto the head and mostly finish oldest first: look from the tail.
    if not held[id] then held[id] = redis.call('LREM', processing, -1, id) > 0 end
  end
elseif length > 0 then
  local settling = {}
  for _, id in ipairs(ids) do settling[id] = true end
  local kept = {}
  for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
    if settling[id] and not held[id] then held[id] = true else kept[#kept + 1] = id end
  end
  redis.call('DEL', processing)
  each_chunk('RPUSH', processing, kept)
end

local settled, state, ready_at, error = {}, {}, {}, {}
local done, retrying, died = {}, {}, {}
for n, id in ipairs(ids) do
  local i = 4 + (n - 1) * 4
  if held[id] then
    -- Settled once, even if the same id came twice.
    held[id] = nil
    local outcome, err = ARGV[i + 1], ARGV[i + 3]
    if outcome == 'done' then
      push_pair(state, id, 'done')
      push_pair(done, now, id)
    elseif outcome == 'retry' then
      local at = now + tonumber(ARGV[i + 2])
      push_pair(state, id, 'delayed')
      push_pair(ready_at, id, at)
      push_pair(error, id, err)
      push_pair(retrying, at, id)
    else
      push_pair(state, id, 'dead')
      push_pair(error, id, err)
      push_pair(died, now, id)
    end
    settled[n] = 1
  else
    settled[n] = 0
  end
end
write('state', state)
write('ready_at', ready_at)
write('error', error)
each_chunk('ZADD', finished, done)
each_chunk('ZADD', delayed, retrying)
if #died > 0 then
  each_chunk('ZADD', dead, died)
  -- Over the cap, the oldest dead jobs go, data and all (by age: see expire.lua).
  local over = redis.call('ZCARD', dead) - dead_cap
  if over > 0 then drop_jobs(redis.call('ZRANGE', dead, 0, over - 1)) end
end
return settled
