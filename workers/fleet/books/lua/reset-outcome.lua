--[[
  Forgets an item's outcome, so that it is pending again (a retry, a re-examined bad line),
  and takes it off the run's counters.
    Input:
      KEYS[1] outcomes  item → outcome
      KEYS[2] counts    the run's counters
      ARGV[1] item
    Output:
      1 it had an outcome, 0 it had none
]]
--- @include "bump"
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev then return 0 end
bump(KEYS[2], prev, -1)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
