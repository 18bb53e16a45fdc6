#!lua
--[[ trim: delete completed and failed tasks that ended more than the retention ago,
  oldest first across both sets (by end time, then task id as bytes: the fake's order),
  examining at most min(limit, 1000) index entries per call whatever the caller asks.
  KEYS[1] completed zset     ponos:{ns}:tasks:completed
  KEYS[2] failed zset        ponos:{ns}:tasks:failed
  Derived keys (read from KEYS[1..2]; same hash tag): ARGV[4]..'task:'..<id>, and the
          chain task index ARGV[4]..'chain:'..<the task's chain_id field>..':tasks'
  ARGV[1] now (ms) or ''
  ARGV[2] retention (ms)
  ARGV[3] limit
  ARGV[4] key prefix         ponos:{ns}:
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', deleted, examined}: examined < min(limit, 1000) means none is left | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local now = now_ms(ARGV[1])
local horizon, limit, prefix = now - tonumber(ARGV[2]), math.min(tonumber(ARGV[3]), 1000), ARGV[4]
local statuses = {'completed', 'failed'}

-- Byte order, as a zset orders the members of one score (Lua's '<' on strings
-- follows the server's locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The first `limit` expired entries of each set, merged by (end time, id).
local heads = {}
for k = 1, 2 do
  heads[k] = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', horizon, 'WITHSCORES', 'LIMIT', 0, limit)
end
local at = {1, 1}
local deleted, examined = 0, 0
while examined < limit do
  local a, b = heads[1][at[1]], heads[2][at[2]]
  if not a and not b then break end
  local k = 2
  if a and b then
    local sa, sb = tonumber(heads[1][at[1] + 1]), tonumber(heads[2][at[2] + 1])
    if sa < sb or (sa == sb and before(a, b)) then k = 1 end
  elseif a then
    k = 1
  end
  local id = heads[k][at[k]]
  at[k] = at[k] + 2
  examined = examined + 1
  local task_key = prefix .. 'task:' .. id
  local f = redis.call('HMGET', task_key, 'status', 'chain_id')
  if f[1] == statuses[k] then
    if f[2] then redis.call('ZREM', prefix .. 'chain:' .. f[2] .. ':tasks', id) end
    redis.call('DEL', task_key)
    deleted = deleted + 1
  end
  redis.call('ZREM', KEYS[k], id)
end
return {'OK', deleted, examined}
