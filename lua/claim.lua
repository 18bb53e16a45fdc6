#!lua
--[[ claim: pending -> processing for the oldest pending tasks, each under a new
  fencing token; a task whose deadline has passed goes to failed instead
  ("deadline exceeded") and does not count toward the limit.
  Bounded work: at most 500 tasks are claimed and at most 1000 index entries
  are looked at per call, whatever the caller asks (the store splits larger
  claims into several calls). A task whose hash cannot be read is set aside
  (off the pending index, onto the set-aside index, a task.set_aside event).
  KEYS[1] pending zset       ponos:{ns}:tasks:pending
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  KEYS[3] failed zset        ponos:{ns}:tasks:failed
  KEYS[4] fence counter      ponos:{ns}:fence
  KEYS[5] event stream       ponos:{ns}:events
  KEYS[6] claim record       ponos:{ns}:claim:<claim id>
  KEYS[7] set-aside zset     ponos:{ns}:set-aside
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  Derived keys (the tasks are only known once read from KEYS[1]; all share the
  namespace's hash tag, so they are in the same slot):
          ARGV[6]..'task:'..<id>, ARGV[6]..'avs:'..<avs>..':pending'
  ARGV[1] now (ms) or ''
  ARGV[2] owner
  ARGV[3] limit (at most 500 are claimed)
  ARGV[4] lease (ms)
  ARGV[5] events maxlen
  ARGV[6] key prefix         ponos:{ns}:
  ARGV[7] the text of a deadline failure
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Replay-safe: the claim record (kept for the lease's length, written only when
  something was claimed) remembers what a claim id got; a retried call with the
  same id gets the same tasks back (those it still holds) instead of claiming more.
  Returns {'OK', lease_until, more, {token, attempt, {task hash fields and values}}, ...}
    (more: 1 when the look-at bound stopped it before the limit) | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local pending_key, processing_key, failed_key, fence_key, events_key, claim_key, set_aside_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local now = now_ms(ARGV[1])
local owner, limit, lease_ms, maxlen, prefix = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local deadline_text = ARGV[7]
local MAX_CLAIMED, MAX_LOOKED_AT = 500, 1000
if limit > MAX_CLAIMED then limit = MAX_CLAIMED end

local prior = redis.call('GET', claim_key)
if prior then
  local saved = cjson.decode(prior)
  local again = {'OK', saved.lease_until, 0}
  for _, entry in ipairs(saved.tasks) do
    local id, token, attempt = entry[1], entry[2], entry[3]
    local task_key = prefix .. 'task:' .. id
    if redis.call('HGET', task_key, 'token') == token then
      again[#again + 1] = {token, attempt, redis.call('HGETALL', task_key)}
    end
  end
  return again
end
local STATUSES = {pending = true, processing = true, completed = true, failed = true}
local claimed_ids = {}
local lease_until = now + lease_ms
local result = {'OK', int(lease_until), 0}
local claimed, looked_at = 0, 0

while claimed < limit and looked_at < MAX_LOOKED_AT do
  local ids = redis.call('ZRANGE', pending_key, 0, math.min(limit - claimed, MAX_LOOKED_AT - looked_at) - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    looked_at = looked_at + 1
    local task_key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', task_key, 'deadline', 'attempts', 'status')
    local deadline, attempts, status = tonumber(f[1]), tonumber(f[2]), f[3]
    if not status then
      redis.call('ZREM', pending_key, id)  -- an index entry whose task is gone
    elseif status ~= 'pending' and STATUSES[status] then
      dequeue(task_key, pending_key, prefix, id)  -- a stale index entry
    elseif status ~= 'pending' or attempts == nil or (f[1] ~= '' and deadline == nil) then
      set_aside(task_key, set_aside_key, pending_key, pending_key, prefix, id, now, events_key, maxlen)
    elseif deadline and deadline <= now then
      dequeue(task_key, pending_key, prefix, id)
      redis.call('HSET', task_key, 'status', 'failed', 'last_error', deadline_text, 'updated_at', int(now))
      redis.call('ZADD', failed_key, now, id)
      emit(events_key, maxlen, now, 'task.failed', id, 'failed')
    else
      dequeue(task_key, pending_key, prefix, id)
      local token = next_token(fence_key, now)
      local attempt = attempts + 1
      redis.call('HSET', task_key, 'status', 'processing', 'owner', owner, 'token', token,
        'lease_until', int(lease_until), 'attempts', int(attempt), 'updated_at', int(now))
      redis.call('ZADD', processing_key, lease_until, id)
      emit(events_key, maxlen, now, 'task.claimed', id, 'processing', owner, token)
      result[#result + 1] = {token, attempt, redis.call('HGETALL', task_key)}
      claimed_ids[#claimed_ids + 1] = {id, token, attempt}
      claimed = claimed + 1
    end
  end
end
if claimed < limit and looked_at >= MAX_LOOKED_AT then result[3] = 1 end
if claimed > 0 then
  local record = cjson.encode({lease_until = int(lease_until), tasks = claimed_ids})
  redis.call('SET', claim_key, record, 'PX', int(lease_ms))
end
return result
