-- Drops finished jobs that aged out: done ones after finished_ttl, dead ones after dead_ttl,
-- at most `limit` of each per call (the caller loops while a full chunk went).
-- ARGV: base, finished_ttl_s, dead_ttl_s, limit. Returns how many jobs were dropped.
local finished_ttl, dead_ttl, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local old_done = redis.call('ZRANGEBYSCORE', finished, '-inf', now - finished_ttl * 1000, 'LIMIT', 0, limit)
local old_dead = redis.call('ZRANGEBYSCORE', dead, '-inf', now - dead_ttl * 1000, 'LIMIT', 0, limit)
drop_jobs(old_done)
drop_jobs(old_dead)
return math.max(#old_done, #old_dead)
