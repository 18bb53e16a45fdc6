#!lua
--[[ trim: delete completed and failed tasks that ended more than the retention ago,
  oldest first, at most a limit per call.
  KEYS[1] completed zset     ponos:{ns}:tasks:completed
  KEYS[2] failed zset        ponos:{ns}:tasks:failed
  Derived key (read from KEYS[1..2]; same hash tag): ARGV[4]..'task:'..<id>
  ARGV[1] now (ms) or ''
  ARGV[2] retention (ms)
  ARGV[3] limit
  ARGV[4] key prefix         ponos:{ns}:
  Returns {'OK', deleted} ]]
local now = now_ms(ARGV[1])
local horizon, limit, prefix = now - tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local deleted = 0
for k = 1, 2 do
  if deleted >= limit then break end
  local status = (k == 1) and 'completed' or 'failed'
  local ids = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', horizon, 'LIMIT', 0, limit - deleted)
  for _, id in ipairs(ids) do
    local task_key = prefix .. 'task:' .. id
    if redis.call('HGET', task_key, 'status') == status then
      redis.call('DEL', task_key)
      deleted = deleted + 1
    end
    redis.call('ZREM', KEYS[k], id)
  end
end
return {'OK', deleted}
