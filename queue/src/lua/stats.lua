-- Counts for operators. ARGV: base.
-- Returns {ready, scheduled, in_flight, dead, workers, paused (0|1), oldest_ready_age_ms}: the
-- age is how long the job at the oldest end of the ready list has been runnable (0 if none).
local base = ARGV[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local workers = redis.call('ZRANGE', base .. 'leases', 0, -1)
local in_flight = 0
for _, worker in ipairs(workers) do
  in_flight = in_flight + redis.call('LLEN', base .. 'proc:' .. worker)
end
local live = redis.call('ZCOUNT', base .. 'leases', now, '+inf')
local oldest_age = 0
local oldest = redis.call('LINDEX', base .. 'ready', -1)
if oldest then
  local ready_at = tonumber(redis.call('HGET', base .. 'job:' .. oldest, 'ready_at'))
  if ready_at and ready_at < now then oldest_age = now - ready_at end
end
return {redis.call('LLEN', base .. 'ready'), redis.call('ZCARD', base .. 'delayed'), in_flight,
  redis.call('ZCARD', base .. 'dead'), live, redis.call('EXISTS', base .. 'paused'), oldest_age}
