#!lua
--[[ fail: processing -> failed, or with retry -> pending while attempts < max_attempts
  (then failed), for the current token only. Repeating a plain fail with the
  token that failed the task is a no-op (replay).
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  KEYS[3] failed zset        ponos:{ns}:tasks:failed
  KEYS[4] pending zset       ponos:{ns}:tasks:pending
  KEYS[5] fence counter      ponos:{ns}:fence
  KEYS[6] event stream       ponos:{ns}:events
  Derived key: ARGV[8]..'avs:'..<the task's avs>..':pending' (same hash tag)
  ARGV[1] now (ms) or ''
  ARGV[2] token
  ARGV[3] reason
  ARGV[4] retry: '1' or '0'
  ARGV[5] max attempts
  ARGV[6] events maxlen
  ARGV[7] task id
  ARGV[8] key prefix         ponos:{ns}:
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', status} | {'OK', 'REPLAY'} | {'NOTFOUND'} | {'STALE', current} | {'TRANSITION', status}
    | {'CORRUPT', field} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, processing_key, failed_key, pending_key, fence_key, events_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = now_ms(ARGV[1])
local token, reason, retry, max_attempts = ARGV[2], ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])
local maxlen, id, prefix = ARGV[6], ARGV[7], ARGV[8]
local cur = redis.call('HMGET', task_key, 'status', 'token', 'owner', 'attempts')
if not retry and cur[1] == 'failed' and cur[2] == token then return {'OK', 'REPLAY'} end
local refused = check_held(task_key, token, 'processing')
if refused then return refused end
local attempts = tonumber(cur[4])
if attempts == nil then return {'CORRUPT', 'attempts'} end
redis.call('ZREM', processing_key, id)
if retry and attempts < max_attempts then
  local new_token = next_token(fence_key, now)
  redis.call('HSET', task_key, 'status', 'pending', 'token', new_token, 'last_error', reason, 'updated_at', int(now))
  redis.call('HDEL', task_key, 'owner', 'lease_until')
  enqueue(task_key, pending_key, prefix, id)
  emit(events_key, maxlen, now, 'task.retried', id, 'pending', false, new_token)
  return {'OK', 'pending'}
end
local last_error = reason
if retry then
  -- the same text as ponos_redis.backends._common.retry_exhausted_error
  last_error = reason .. ' (no retry: ' .. int(attempts) .. ' of ' .. int(max_attempts) .. ' attempts used)'
end
redis.call('HSET', task_key, 'status', 'failed', 'last_error', last_error, 'updated_at', int(now))
redis.call('HDEL', task_key, 'lease_until')
redis.call('ZADD', failed_key, now, id)
emit(events_key, maxlen, now, 'task.failed', id, 'failed', cur[3], token)
return {'OK', 'failed'}
