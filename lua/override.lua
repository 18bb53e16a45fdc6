#!lua
--[[ override: the operator's update_task_status, validated against the table
  of ponos_redis/transitions.py (TASK_OVERRIDES; a unit test compares them).
  Same status: no-op. Any change gives the task a new token, and takes it off the
  set-aside index (an operator repaired its record and moves it on). failed -> pending
  (the operator's requeue) also resets attempts to 0. The event's owner is
  'manual': an override is an operator's action.
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] pending zset       ponos:{ns}:tasks:pending
  KEYS[3] processing zset    ponos:{ns}:tasks:processing
  KEYS[4] completed zset     ponos:{ns}:tasks:completed
  KEYS[5] failed zset        ponos:{ns}:tasks:failed
  KEYS[6] fence counter      ponos:{ns}:fence
  KEYS[7] event stream       ponos:{ns}:events
  KEYS[8] set-aside zset     ponos:{ns}:set-aside (a change takes a task repaired by hand off it)
  Derived key: ARGV[7]..'avs:'..<the task's avs>..':pending' (same hash tag)
  ARGV[1] now (ms) or ''
  ARGV[2] target status
  ARGV[3] lease given by an override to processing (ms)
  ARGV[4] events maxlen
  ARGV[5] task id
  ARGV[6] event kind of this change
  ARGV[7] key prefix         ponos:{ns}:
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'OK', 'NOOP'} | {'NOTFOUND'} | {'TRANSITION', status} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, pending_key, processing_key, completed_key, failed_key, fence_key, events_key, set_aside_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = now_ms(ARGV[1])
local target, lease_ms, maxlen, id, kind, prefix =
  ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local ALLOWED = {
  pending = {processing = true, failed = true},
  processing = {completed = true, failed = true, pending = true},
  completed = {},
  failed = {pending = true},
}
local cur = redis.call('HMGET', task_key, 'status', 'owner')
local status, owner = cur[1], cur[2]
if not status then return {'NOTFOUND'} end
if status == target then return {'OK', 'NOOP'} end
if not ALLOWED[status] or not ALLOWED[status][target] then return {'TRANSITION', status} end

local index = {pending = pending_key, processing = processing_key, completed = completed_key, failed = failed_key}
if status == 'pending' then
  dequeue(task_key, pending_key, prefix, id)
else
  redis.call('ZREM', index[status], id)
end
redis.call('ZREM', set_aside_key, id)
local token = next_token(fence_key, now)
redis.call('HSET', task_key, 'status', target, 'token', token, 'updated_at', int(now))
if target == 'processing' then
  owner = 'manual'
  local lease_until = now + lease_ms
  redis.call('HSET', task_key, 'owner', owner, 'lease_until', int(lease_until))
  redis.call('ZADD', processing_key, lease_until, id)
elseif target == 'pending' then
  redis.call('HDEL', task_key, 'owner', 'lease_until')
  if status == 'failed' then redis.call('HSET', task_key, 'attempts', 0) end
  enqueue(task_key, pending_key, prefix, id)
else
  redis.call('HDEL', task_key, 'lease_until')
  if target == 'failed' then
    redis.call('HSET', task_key, 'last_error', 'set to failed by an operator')
  end
  redis.call('ZADD', index[target], now, id)
end
emit(events_key, maxlen, now, kind, id, target, 'manual', token)
return {'OK'}
