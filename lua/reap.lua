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
  KEYS[6] set-aside zset     ponos:{ns}:set-aside
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  Derived keys (read from KEYS[1]; same hash tag):
          ARGV[5]..'task:'..<id>, ARGV[5]..'avs:'..<avs>..':pending'
  ARGV[1] now (ms) or ''
  ARGV[2] max attempts
  ARGV[3] batch size (at most this many per call, and never more than 500)
  ARGV[4] events maxlen
  ARGV[5] key prefix         ponos:{ns}:
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Bounded work: at most 1000 index entries are looked at per call. A task whose
  hash cannot be read is set aside (off the processing index, onto the set-aside
  index, a task.set_aside event).
  Returns {'OK', reaped, more}: more is 1 when a bound stopped it | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local processing_key, pending_key, failed_key, fence_key, events_key, set_aside_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local now = now_ms(ARGV[1])
local max_attempts, batch, maxlen, prefix = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local MAX_BATCH, MAX_LOOKED_AT = 500, 1000
if batch > MAX_BATCH then batch = MAX_BATCH end
local reaped, looked_at = 0, 0
while reaped < batch and looked_at < MAX_LOOKED_AT do
  local ids = redis.call('ZRANGEBYSCORE', processing_key, '-inf', now, 'LIMIT', 0,
    math.min(batch - reaped, MAX_LOOKED_AT - looked_at))
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    looked_at = looked_at + 1
    local task_key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', task_key, 'status', 'lease_until', 'attempts')
    local lease_until, attempts = tonumber(f[2]), tonumber(f[3])
    if not f[1] then
      redis.call('ZREM', processing_key, id)  -- an index entry whose task is gone
    elseif f[1] ~= 'processing' then
      if f[1] == 'pending' or f[1] == 'completed' or f[1] == 'failed' then
        redis.call('ZREM', processing_key, id)  -- a stale index entry
      else
        set_aside(task_key, set_aside_key, processing_key, pending_key, prefix, id, now, events_key, maxlen)
      end
    elseif lease_until == nil or attempts == nil then
      set_aside(task_key, set_aside_key, processing_key, pending_key, prefix, id, now, events_key, maxlen)
    elseif lease_until > now then
      redis.call('ZADD', processing_key, lease_until, id)  -- the index lagged a renewal
    else
      local token = next_token(fence_key, now)
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
if reaped == batch or looked_at >= MAX_LOOKED_AT then more = 1 end
return {'OK', reaped, more}
