-- Renews a worker's lease. ARGV: base, worker, lease_ms.
local worker, lease = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call('ZADD', leases, now + lease, worker)
return now
