-- Gives the jobs of workers whose lease expired (killed, hung, or cut off from Redis) back to
-- the ready list, at the consumer's end so they run next. Their attempt was counted at claim.
-- ARGV: base, max_workers. Returns {workers_reaped, jobs_requeued}.
local limit = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now_ms(), 'LIMIT', 0, limit)
local moved = 0
for _, worker in ipairs(expired) do
  local processing = base .. 'proc:' .. worker
  local ids = oldest_first(processing)
  hand_back(processing, ids)
  redis.call('ZREM', leases, worker)
  moved = moved + #ids
end
return {#expired, moved}
