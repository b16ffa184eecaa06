-- Settles finished attempts, any number per call: each one done, retried later, or dead. A
-- worker whose lease expired had its jobs re-queued; its late acks find nothing in its list
-- and change nothing.
-- ARGV: base, worker, finished_ttl_s, dead_ttl_s, dead_cap, then per job: id, outcome
--       ('done' | 'retry' | 'dead'), delay_ms, error
-- Returns, per job in order, 1 when settled or 0 when it was no longer this worker's.
local base, worker = ARGV[1], ARGV[2]
local finished_ttl, dead_ttl, dead_cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local processing, dead = base .. 'proc:' .. worker, base .. 'dead'
local any_dead = false
local settled = {}
for i = 6, #ARGV, 4 do
  local id, outcome, delay, err = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  -- Jobs are claimed onto the head and mostly finish oldest first: look from the tail.
  if redis.call('LREM', processing, -1, id) == 0 then
    settled[#settled + 1] = 0
  else
    local job = base .. 'job:' .. id
    if outcome == 'done' then
      redis.call('HSET', job, 'state', 'done', 'finished_at', now)
      redis.call('EXPIRE', job, finished_ttl)
    elseif outcome == 'retry' then
      redis.call('HSET', job, 'state', 'delayed', 'ready_at', now + delay, 'error', err)
      redis.call('ZADD', base .. 'delayed', now + delay, id)
    else
      redis.call('HSET', job, 'state', 'dead', 'finished_at', now, 'error', err)
      redis.call('EXPIRE', job, dead_ttl)
      redis.call('ZADD', dead, now, id)
      any_dead = true
    end
    settled[#settled + 1] = 1
  end
end
if any_dead then
  redis.call('ZREMRANGEBYSCORE', dead, '-inf', now - dead_ttl * 1000)
  local count = redis.call('ZCARD', dead)
  if count > dead_cap then redis.call('ZREMRANGEBYRANK', dead, 0, count - dead_cap - 1) end
end
return settled
