--[[
  Moves a run to another state when its present state is one it may be entered from.
    Input:
      KEYS[1] meta      the run's state
      ARGV[1] to        the new state
      ARGV[2] reason
      ARGV[3] at        ms since the epoch
      ARGV[4..] from    the states `to` may be entered from
    Output:
      the state it left, or nil when it did not move (or the run does not exist)
]]
local from = redis.call('HGET', KEYS[1], 'state')
if not from then return false end
for i = 4, #ARGV do
  if ARGV[i] == from then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'updatedAt', ARGV[3])
    return from
  end
end
return false
