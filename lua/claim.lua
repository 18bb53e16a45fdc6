#!lua
--[[ claim: pending -> processing for the oldest pending tasks, each under a new
  fencing token; a task whose deadline has passed goes to failed instead
  ("deadline exceeded") and does not count toward the limit.
  KEYS[1] pending zset       ponos:{ns}:tasks:pending
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  KEYS[3] failed zset        ponos:{ns}:tasks:failed
  KEYS[4] fence counter      ponos:{ns}:fence
  KEYS[5] event stream       ponos:{ns}:events
  KEYS[6] claim record       ponos:{ns}:claim:<claim id>
  Derived keys (the tasks are only known once read from KEYS[1]; all share the
  namespace's hash tag, so they are in the same slot):
          ARGV[6]..'task:'..<id>, ARGV[6]..'avs:'..<avs>..':pending'
  ARGV[1] now (ms) or ''
  ARGV[2] owner
  ARGV[3] limit
  ARGV[4] lease (ms)
  ARGV[5] events maxlen
  ARGV[6] key prefix         ponos:{ns}:
  ARGV[7] the text of a deadline failure
  Replay-safe: the claim record (kept for the lease's length) remembers what a
  claim id got; a retried call with the same id gets the same tasks back (those
  it still holds) instead of claiming more.
  Returns {'OK', lease_until, {token, attempt, {task hash fields and values}}, ...} ]]
local pending_key, processing_key, failed_key, fence_key, events_key, claim_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = now_ms(ARGV[1])
local owner, limit, lease_ms, maxlen, prefix = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local deadline_text = ARGV[7]

local prior = redis.call('GET', claim_key)
if prior then
  local saved = cjson.decode(prior)
  local again = {'OK', saved[1]}
  for k = 2, #saved do
    local id, token, attempt = saved[k][1], saved[k][2], saved[k][3]
    local task_key = prefix .. 'task:' .. id
    if redis.call('HGET', task_key, 'token') == token then
      again[#again + 1] = {token, attempt, redis.call('HGETALL', task_key)}
    end
  end
  return again
end
local record = {}
local lease_until = now + lease_ms
local result = {'OK', int(lease_until)}
local claimed = 0

-- A task whose hash cannot be read (a field edited by hand) is skipped and
-- left where it is, for an operator to repair; `skipped` steps over it.
local skipped = 0
while claimed < limit do
  local ids = redis.call('ZRANGE', pending_key, skipped, skipped + limit - claimed - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local task_key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', task_key, 'deadline', 'attempts', 'status')
    local deadline, attempts = tonumber(f[1]), tonumber(f[2])
    if f[3] ~= 'pending' then
      dequeue(task_key, pending_key, prefix, id)  -- a stale index entry
    elseif attempts == nil or (f[1] ~= '' and deadline == nil) then
      skipped = skipped + 1
    elseif deadline and deadline <= now then
      dequeue(task_key, pending_key, prefix, id)
      redis.call('HSET', task_key, 'status', 'failed', 'last_error', deadline_text, 'updated_at', int(now))
      redis.call('ZADD', failed_key, now, id)
      emit(events_key, maxlen, now, 'task.failed', id, 'failed')
    else
      dequeue(task_key, pending_key, prefix, id)
      local token = int(redis.call('INCR', fence_key))
      local attempt = attempts + 1
      redis.call('HSET', task_key, 'status', 'processing', 'owner', owner, 'token', token,
        'lease_until', int(lease_until), 'attempts', int(attempt), 'updated_at', int(now))
      redis.call('ZADD', processing_key, lease_until, id)
      emit(events_key, maxlen, now, 'task.claimed', id, 'processing', owner, token)
      result[#result + 1] = {token, attempt, redis.call('HGETALL', task_key)}
      record[#record + 1] = {id, token, attempt}
      claimed = claimed + 1
    end
  end
end
redis.call('SET', claim_key, cjson.encode({int(lease_until), unpack(record)}), 'PX', int(lease_ms))
return result
