-- Which of the given jobs has Redis lost? A job is present when its state is recorded and the
-- structure the state names still holds it: the delayed set, a live worker's processing list,
-- or (checked by existence, since finding an id in a long list costs a scan) the ready list.
-- Finished jobs ('done', 'dead') count as present. A restart without persistence, a failover
-- to a replica that missed writes, an eviction or a FLUSHALL all leave ids missing.
-- ARGV: base, then ids. Returns the missing ids.
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local states = read('state', ids)
local workers = nil
local missing = {}
for i, id in ipairs(ids) do
  local state = states[i]
  if not state and adopt_legacy(id) then state = redis.call('HGET', fields.state, id) end
  local present = false
  if state == 'done' or state == 'dead' then
    present = true
  elseif state == 'delayed' then
    present = redis.call('ZSCORE', delayed, id) ~= false
  elseif state == 'ready' then
    present = redis.call('EXISTS', ready) == 1
  elseif state == 'running' then
    if not workers then workers = redis.call('ZRANGE', leases, 0, -1) end
    for _, worker in ipairs(workers) do
      if redis.call('LPOS', base .. 'proc:' .. worker, id) then
        present = true
        break
      end
    end
  end
  if not present then missing[#missing + 1] = id end
end
return missing
