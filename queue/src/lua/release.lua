-- A worker stopping gracefully hands back what it holds but never started (claimed during
-- shutdown): those attempts did not run, so they are not counted. The lease is kept a little
-- longer than a blocking move can take, so a move still in flight is reaped, not orphaned.
-- ARGV: base, worker, linger_ms. Returns how many jobs were handed back.
local base, worker, linger = ARGV[1], ARGV[2], tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local processing, ready = base .. 'proc:' .. worker, base .. 'ready'
local moved = 0
while true do
  local id = redis.call('LMOVE', processing, ready, 'RIGHT', 'RIGHT')
  if not id then break end
  local job = base .. 'job:' .. id
  if redis.call('HGET', job, 'state') == 'running' then
    redis.call('HINCRBY', job, 'attempts', -1)
  end
  redis.call('HSET', job, 'state', 'ready')
  moved = moved + 1
end
redis.call('ZADD', base .. 'leases', now + linger, worker)
return moved
