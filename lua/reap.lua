#!lua
--[[ reap: expired leases -> pending (attempts < max_attempts) or failed, each
  with a new token. Each task is re-checked against its own hash (still
  processing, lease expired by this clock) before it moves, so a late renew or
  complete that won the race is never undone.
  KEYS[1] processing zset    ponos:{ns}:tasks:processing
  KEYS[2] pending zset       ponos:{ns}:tasks:pending
  KEYS[3] failed zset        ponos:{ns}:tasks:failed
  KEYS[4] fence counter      ponos:{ns}:fence
  KEYS[5] event stream       ponos:{ns}:events
  Derived keys (read from KEYS[1]; same hash tag):
          ARGV[5]..'task:'..<id>, ARGV[5]..'avs:'..<avs>..':pending'
  ARGV[1] now (ms) or ''
  ARGV[2] max attempts
  ARGV[3] batch size (at most this many per call)
  ARGV[4] events maxlen
  ARGV[5] key prefix         ponos:{ns}:
  Returns {'OK', reaped, more}: more is 1 when the batch was full ]]
local processing_key, pending_key, failed_key, fence_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms(ARGV[1])
local max_attempts, batch, maxlen, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
-- A task whose hash cannot be read (a field edited by hand) is skipped and left
-- where it is, for an operator to repair; `skipped` steps over it.
local reaped, skipped = 0, 0
while reaped < batch do
  local ids = redis.call('ZRANGEBYSCORE', processing_key, '-inf', now, 'LIMIT', skipped, batch - reaped)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local task_key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', task_key, 'status', 'lease_until', 'attempts')
    local lease_until, attempts = tonumber(f[2]), tonumber(f[3])
    if f[1] ~= 'processing' then
      redis.call('ZREM', processing_key, id)  -- a stale index entry
    elseif lease_until == nil or attempts == nil then
      skipped = skipped + 1
    elseif lease_until > now then
      redis.call('ZADD', processing_key, lease_until, id)  -- the index lagged a renewal
    else
      local token = int(redis.call('INCR', fence_key))
      redis.call('ZREM', processing_key, id)
      local status = 'pending'
      if attempts < max_attempts then
        redis.call('HSET', task_key, 'status', 'pending', 'token', token, 'updated_at', int(now))
        redis.call('HDEL', task_key, 'owner', 'lease_until')
        enqueue(task_key, pending_key, prefix, id)
      else
        status = 'failed'
        -- the same text as ponos_redis.backends._common.reap_error
        redis.call('HSET', task_key, 'status', 'failed', 'token', token, 'updated_at', int(now),
          'last_error', 'lease expired after ' .. int(attempts) .. ' of ' .. int(max_attempts) .. ' attempts')
        redis.call('HDEL', task_key, 'lease_until')
        redis.call('ZADD', failed_key, now, id)
      end
      emit(events_key, maxlen, now, 'task.reaped', id, status, false, token)
      reaped = reaped + 1
    end
  end
end
local more = 0
if reaped == batch then more = 1 end
return {'OK', reaped, more}
