--[[
  Records an item's outcome, and updates the run's counters with it, only when it changes;
  completes the run when that was its last item.
    Input:
      KEYS[1] outcomes  item → outcome
      KEYS[2] counts    the run's counters
      KEYS[3] meta      the run's state
      KEYS[4] items     item → manifest line
      KEYS[5] recent    item → when a worker finished it
      ARGV[1] item
      ARGV[2] outcome   c | w | d | f:<reason> | b:<reason>
      ARGV[3] at        ms since the epoch
      ARGV[4] tokens    the item's tokens, counted the first time it gets an outcome
      ARGV[5] byWorker  1: a worker finished it (it enters `recent`), 0: refused at submit
      ARGV[6] window    ms of `recent` to keep
    Output:
      0 the same outcome again, 1 changed, 2 changed and completed the run
]]
--- @include "bump"
--- @include "complete-if-done"
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev == ARGV[2] then return 0 end
if prev then bump(KEYS[2], prev, -1) end
bump(KEYS[2], ARGV[2], 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not prev then redis.call('HINCRBY', KEYS[2], 'tokens', tonumber(ARGV[4])) end
redis.call('HSETNX', KEYS[2], 'firstAt', ARGV[3])
redis.call('HSET', KEYS[2], 'lastAt', ARGV[3])
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[3]), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[6]))
end
return 1 + completeIfDone(KEYS[3], KEYS[4], KEYS[2], ARGV[3])
