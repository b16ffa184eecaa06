-- Renews a worker's lease. ARGV: base, worker, lease_ms.
local base, worker, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', base .. 'leases', now + lease, worker)
return now
