-- Makes jobs waiting for their time (delayed, or retrying after a failure) runnable now.
-- ARGV: base, then ids. Returns how many were waiting and now are ready; an id that is not
-- in the delayed set (running, finished, unknown) is left alone.
local now = now_ms()
local moved, state, ready_at = {}, {}, {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', delayed, id) == 1 then
    moved[#moved + 1] = id
    push_pair(state, id, 'ready')
    push_pair(ready_at, id, now)
  end
end
write('state', state)
write('ready_at', ready_at)
each_chunk('LPUSH', ready, moved)
return #moved
