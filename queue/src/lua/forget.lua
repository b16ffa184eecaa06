-- Deletes finished jobs ('done', 'dead') and their dead-index entries; waiting or running jobs
-- are left alone. ARGV: base, then ids. Returns how many were deleted.
local base = ARGV[1]
local deleted = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = base .. 'job:' .. id
  local state = redis.call('HGET', job, 'state')
  if state == 'done' or state == 'dead' then
    redis.call('DEL', job)
    redis.call('ZREM', base .. 'dead', id)
    deleted = deleted + 1
  end
end
return deleted
