-- Makes jobs waiting for their time (delayed, or retrying after a failure) runnable now.
-- ARGV: base, then ids. Returns how many were waiting and now are ready; an id that is not
-- in the delayed set (running, finished, unknown) is left alone.
local base = ARGV[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local moved = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', base .. 'delayed', id) == 1 then
    redis.call('HSET', base .. 'job:' .. id, 'state', 'ready', 'ready_at', now)
    redis.call('LPUSH', base .. 'ready', id)
    moved = moved + 1
  end
end
return moved
