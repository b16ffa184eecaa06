-- A worker stopping gracefully hands back what it holds but never started (claimed during
-- shutdown): those attempts did not run, so they are not counted. The lease is kept a little
-- longer than a blocking move can take, so a move still in flight is reaped, not orphaned.
-- ARGV: base, worker, linger_ms. Returns how many jobs were handed back.
local worker, linger = ARGV[2], tonumber(ARGV[3])
local processing = base .. 'proc:' .. worker
local ids = oldest_first(processing)
local states, used = read('state', ids), read('attempts', ids)
local attempts = {}
for i, id in ipairs(ids) do
  -- A job a blocking move took but no claim started was never counted.
  if states[i] == 'running' and used[i] then push_pair(attempts, id, tonumber(used[i]) - 1) end
end
write('attempts', attempts)
hand_back(processing, ids)
redis.call('ZADD', leases, now_ms() + linger, worker)
return #ids
