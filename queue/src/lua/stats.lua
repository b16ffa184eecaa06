-- Counts for operators. ARGV: base.
-- Returns {ready, scheduled, in_flight, dead, workers}.
local base = ARGV[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local workers = redis.call('ZRANGE', base .. 'leases', 0, -1)
local in_flight = 0
for _, worker in ipairs(workers) do
  in_flight = in_flight + redis.call('LLEN', base .. 'proc:' .. worker)
end
local live = redis.call('ZCOUNT', base .. 'leases', now, '+inf')
return {redis.call('LLEN', base .. 'ready'), redis.call('ZCARD', base .. 'delayed'), in_flight, redis.call('ZCARD', base .. 'dead'), live}
