-- Counts for operators. ARGV: base.
-- Returns {ready, scheduled, in_flight, dead, workers, paused (0|1), oldest_ready_age_ms}: the
-- age is how long the job at the oldest end of the ready list has been runnable (0 if none).
local now = now_ms()
local workers = redis.call('ZRANGE', leases, 0, -1)
local in_flight = 0
for _, worker in ipairs(workers) do
  in_flight = in_flight + redis.call('LLEN', base .. 'proc:' .. worker)
end
local live = redis.call('ZCOUNT', leases, now, '+inf')
local oldest_age = 0
local oldest = redis.call('LINDEX', ready, -1)
if oldest then
  local ready_at = tonumber(redis.call('HGET', fields.ready_at, oldest))
  if ready_at and ready_at < now then oldest_age = now - ready_at end
end
return {redis.call('LLEN', ready), redis.call('ZCARD', delayed), in_flight,
  redis.call('ZCARD', dead), live, redis.call('EXISTS', base .. 'paused'), oldest_age}
