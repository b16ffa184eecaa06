-- Prepended to every script of the queue. ARGV[1] is always the queue's key base.
--
-- A job's fields live in one hash per field (`args`, `max`, `attempts`, `state`, `ready_at`,
-- `error`), keyed by job id, so a script that starts or settles a batch of jobs reads or
-- writes each field with one command instead of one per job. Finished jobs are indexed by
-- time in `finished` (done) and `dead`, and their fields are dropped when they age out.
local base = ARGV[1]
local fields = {
  args = base .. 'args',
  max = base .. 'max',
  attempts = base .. 'attempts',
  state = base .. 'state',
  ready_at = base .. 'ready_at',
  error = base .. 'error',
}
local ready, delayed, dead, finished = base .. 'ready', base .. 'delayed', base .. 'dead', base .. 'finished'
local leases = base .. 'leases'

-- Redis's clock, ms since the epoch.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Commands take at most this many ids at a time (Lua's unpack has a stack limit).
local CHUNK = 1000

-- Runs `command key ...items` over `items` in chunks; nothing when `items` is empty.
local function each_chunk(command, key, items)
  for first = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, first, math.min(first + CHUNK - 1, #items)))
  end
end

-- HMGET of one field for many ids, as a table indexed like `ids`.
local function read(field, ids)
  if #ids == 0 then return {} end
  if #ids <= CHUNK then return redis.call('HMGET', fields[field], unpack(ids)) end
  local values = {}
  for first = 1, #ids, CHUNK do
    local part = redis.call('HMGET', fields[field], unpack(ids, first, math.min(first + CHUNK - 1, #ids)))
    for i = 1, #part do values[#values + 1] = part[i] end
  end
  return values
end

-- HSET of one field for many ids; `pairs_` is a flat list {id, value, id, value, ...}. The
-- chunk is even, so no pair is split.
local function write(field, pairs_)
  each_chunk('HSET', fields[field], pairs_)
end

-- Deletes the jobs' fields and their entries in the finished and dead indexes.
local function drop_jobs(ids)
  if #ids == 0 then return end
  for _, key in pairs(fields) do each_chunk('HDEL', key, ids) end
  each_chunk('ZREM', finished, ids)
  each_chunk('ZREM', dead, ids)
end

-- The jobs a list holds, oldest claimed first (lists are filled at the head).
local function oldest_first(list)
  local ids = redis.call('LRANGE', list, 0, -1)
  local reversed = {}
  for i = #ids, 1, -1 do reversed[#reversed + 1] = ids[i] end
  return reversed
end

-- Appends two items (an id and its value, or a score and its id) to a flat list.
local function push_pair(list, first, second)
  list[#list + 1] = first
  list[#list + 1] = second
end

-- Gives a worker's jobs (`ids`, its processing list oldest claimed first) back to the ready
-- list at the consumer's end, so they run next and the newest claim first, as moving one at a
-- time from the tail would; the list is emptied.
local function hand_back(processing, ids)
  local state = {}
  for _, id in ipairs(ids) do push_pair(state, id, 'ready') end
  each_chunk('RPUSH', ready, ids)
  write('state', state)
  redis.call('DEL', processing)
end

-- Until this layout, each job had a hash of its own, `job:{id}`. A job found without data is
-- looked for there and moved over (fields the new layout already has, such as a state the
-- reaper wrote, are kept), so an upgrade loses none of the jobs Redis holds. Returns whether
-- there was one.
local legacy_fields = {'args', 'max', 'attempts', 'state', 'ready_at', 'error'}
local function adopt_legacy(id)
  local key = base .. 'job:' .. id
  local values = redis.call('HMGET', key, unpack(legacy_fields))
  if not values[1] then return false end
  for i, field in ipairs(legacy_fields) do
    if values[i] then redis.call('HSETNX', fields[field], id, values[i]) end
  end
  -- Dead ones are in `dead` already; done ones join the finished index to age out.
  if values[4] == 'done' then redis.call('ZADD', finished, now_ms(), id) end
  redis.call('DEL', key)
  return true
end
