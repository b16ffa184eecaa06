-- Moves delayed jobs that are due to the ready list, at most `limit` per call so a burst of
-- due jobs never becomes one long script (the caller loops while a full chunk was moved).
-- ARGV: base, limit. Returns how many were moved.
local limit = tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms(), 'LIMIT', 0, limit)
if #due == 0 then return 0 end
local state = {}
for _, id in ipairs(due) do push_pair(state, id, 'ready') end
each_chunk('ZREM', delayed, due)
each_chunk('LPUSH', ready, due)
write('state', state)
return #due
