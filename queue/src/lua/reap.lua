-- Gives the jobs of workers whose lease expired (killed, hung, or cut off from Redis) back to
-- the ready list, at the consumer's end so they run next. Their attempt was counted at claim.
-- ARGV: base, max_workers. Returns {workers_reaped, jobs_requeued}.
local base, limit = ARGV[1], tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local leases, ready = base .. 'leases', base .. 'ready'
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
local moved = 0
for _, worker in ipairs(expired) do
  local processing = base .. 'proc:' .. worker
  while true do
    local id = redis.call('LMOVE', processing, ready, 'RIGHT', 'RIGHT')
    if not id then break end
    redis.call('HSET', base .. 'job:' .. id, 'state', 'ready')
    moved = moved + 1
  end
  redis.call('ZREM', leases, worker)
end
return {#expired, moved}
