-- Moves delayed jobs that are due to the ready list, at most `limit` per call so a burst of
-- due jobs never becomes one long script (the caller loops while a full chunk was moved).
-- ARGV: base, limit. Returns how many were moved.
local base, limit = ARGV[1], tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local delayed, ready = base .. 'delayed', base .. 'ready'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  redis.call('LPUSH', ready, id)
  redis.call('HSET', base .. 'job:' .. id, 'state', 'ready')
end
return #due
