#!lua
--[[ complete: processing -> completed, for the current token only.
  Repeating it with the token that completed the task is a no-op (replay).
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  KEYS[3] completed zset     ponos:{ns}:tasks:completed
  KEYS[4] event stream       ponos:{ns}:events
  ARGV[1] now (ms) or ''
  ARGV[2] token
  ARGV[3] events maxlen
  ARGV[4] task id
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'OK', 'REPLAY'} | {'NOTFOUND'} | {'STALE', current} | {'TRANSITION', status} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, processing_key, completed_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms(ARGV[1])
local token, maxlen, id = ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HMGET', task_key, 'status', 'token', 'owner')
if cur[1] == 'completed' and cur[2] == token then return {'OK', 'REPLAY'} end
local refused = check_held(task_key, token, 'processing')
if refused then return refused end
redis.call('HSET', task_key, 'status', 'completed', 'updated_at', int(now))
redis.call('HDEL', task_key, 'lease_until')
redis.call('ZREM', processing_key, id)
redis.call('ZADD', completed_key, now, id)
emit(events_key, maxlen, now, 'task.completed', id, 'completed', cur[3], token)
return {'OK'}
