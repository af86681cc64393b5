--[[
  Marks the run's manifest as fed to the end (or not: a check after a retry), then completes
  the run when every item has an outcome.
    Input:
      KEYS[1] meta      the run's state
      KEYS[2] items     item → manifest line
      KEYS[3] counts    the run's counters
      ARGV[1] at        ms since the epoch
      ARGV[2] fed       1: the feeder read the manifest to its end, 0: leave `fed` as it is
    Output:
      1 the run is now completed, 0 it is not
]]
--- @include "complete-if-done"
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'fed', '1') end
return completeIfDone(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
