#!lua
--[[ release: processing -> pending, for the current token only; the task gets a
  new token and keeps its place in the queue.
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  KEYS[3] pending zset       ponos:{ns}:tasks:pending
  KEYS[4] fence counter      ponos:{ns}:fence
  KEYS[5] event stream       ponos:{ns}:events
  Derived key: ARGV[5]..'avs:'..<the task's avs>..':pending' (same hash tag)
  ARGV[1] now (ms) or ''
  ARGV[2] token
  ARGV[3] events maxlen
  ARGV[4] task id
  ARGV[5] key prefix         ponos:{ns}:
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'NOTFOUND'} | {'STALE', current} | {'TRANSITION', status} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, processing_key, pending_key, fence_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms(ARGV[1])
local token, maxlen, id, prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local refused = check_held(task_key, token, 'processing')
if refused then return refused end
local new_token = next_token(fence_key, now)
redis.call('HSET', task_key, 'status', 'pending', 'token', new_token, 'updated_at', int(now))
redis.call('HDEL', task_key, 'owner', 'lease_until')
redis.call('ZREM', processing_key, id)
enqueue(task_key, pending_key, prefix, id)
emit(events_key, maxlen, now, 'task.released', id, 'pending', false, new_token)
return {'OK'}
