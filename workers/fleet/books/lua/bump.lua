--[[
  Included by the scripts that change an item's outcome: bump(C, o, by) adds `by` to the
  counters of outcome `o` in the run's counts hash C (completed, correct, wrong; or failed and
  failed:<reason> for an f: or b: outcome).
]]
local function bump(C, o, by)
  local kind = string.sub(o, 1, 1)
  if kind == 'f' or kind == 'b' then
    redis.call('HINCRBY', C, 'failed', by)
    redis.call('HINCRBY', C, 'failed:' .. string.sub(o, 3), by)
  else
    redis.call('HINCRBY', C, 'completed', by)
    if kind == 'c' then redis.call('HINCRBY', C, 'correct', by) end
    if kind == 'w' then redis.call('HINCRBY', C, 'wrong', by) end
  end
end
