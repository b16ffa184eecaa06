-- Settles a finished attempt: done, retry later, or dead. A worker whose lease expired had
-- its jobs re-queued; its late acks find nothing in its list and change nothing.
-- ARGV: base, worker, id, outcome ('done' | 'retry' | 'dead'), delay_ms, finished_ttl_s,
--       dead_ttl_s, dead_cap, error
-- Returns 1 when settled, 0 when the job was no longer this worker's.
local base, worker, id, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delay, finished_ttl, dead_ttl, dead_cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local err = ARGV[9]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if redis.call('LREM', base .. 'proc:' .. worker, 1, id) == 0 then return 0 end
local job = base .. 'job:' .. id
if outcome == 'done' then
  redis.call('HSET', job, 'state', 'done', 'finished_at', now)
  redis.call('EXPIRE', job, finished_ttl)
elseif outcome == 'retry' then
  redis.call('HSET', job, 'state', 'delayed', 'ready_at', now + delay, 'error', err)
  redis.call('ZADD', base .. 'delayed', now + delay, id)
else
  local dead = base .. 'dead'
  redis.call('HSET', job, 'state', 'dead', 'finished_at', now, 'error', err)
  redis.call('EXPIRE', job, dead_ttl)
  redis.call('ZADD', dead, now, id)
  redis.call('ZREMRANGEBYSCORE', dead, '-inf', now - dead_ttl * 1000)
  local count = redis.call('ZCARD', dead)
  if count > dead_cap then redis.call('ZREMRANGEBYRANK', dead, 0, count - dead_cap - 1) end
end
return 1
