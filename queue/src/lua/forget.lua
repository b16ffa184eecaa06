-- Deletes finished jobs ('done', 'dead') and their index entries; waiting or running jobs
-- are left alone. ARGV: base, then ids. Returns how many were deleted.
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local states = read('state', ids)
local finished_ids, seen = {}, {}
for i, id in ipairs(ids) do
  if (states[i] == 'done' or states[i] == 'dead') and not seen[id] then
    seen[id] = true
    finished_ids[#finished_ids + 1] = id
  end
end
drop_jobs(finished_ids)
return #finished_ids
