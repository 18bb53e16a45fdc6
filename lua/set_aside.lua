#!lua
--[[ set_aside: take a claimed task whose record could not be decoded out of
  circulation, for the holder of its current token only: off the processing
  index, onto the set-aside index, a task.set_aside event. The hash stays as it
  is for an operator to repair; its lease no longer runs, so it is not reaped
  and claimed again and again.
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  KEYS[3] set-aside zset     ponos:{ns}:set-aside
  KEYS[4] event stream       ponos:{ns}:events
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[1] now (ms) or ''
  ARGV[2] token
  ARGV[3] events maxlen
  ARGV[4] task id
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'NOTFOUND'} | {'STALE', current} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, processing_key, set_aside_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms(ARGV[1])
local token, maxlen, id = ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HMGET', task_key, 'status', 'token')
if not cur[1] then return {'NOTFOUND'} end
if cur[2] ~= token then return {'STALE', cur[2] or ''} end
redis.call('ZREM', processing_key, id)
redis.call('ZADD', set_aside_key, now, id)
emit(events_key, maxlen, now, 'task.set_aside', id)
return {'OK'}
