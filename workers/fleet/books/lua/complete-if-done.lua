--[[
  Included by the scripts that may finish a run: completeIfDone(M, I, C, now) sets the run
  `completed` (meta hash M) when it is in_progress, fed to the end, and every item taken in
  (items hash I) has an outcome (counts hash C: completed + failed). Returns 1 when it did.
]]
local function completeIfDone(M, I, C, now)
  if redis.call('HGET', M, 'state') ~= 'in_progress' or redis.call('HGET', M, 'fed') ~= '1' then return 0 end
  local finished = tonumber(redis.call('HGET', C, 'completed') or '0') + tonumber(redis.call('HGET', C, 'failed') or '0')
  if finished < redis.call('HLEN', I) then return 0 end
  redis.call('HSET', M, 'state', 'completed', 'reason', '', 'updatedAt', now)
  return 1
end
