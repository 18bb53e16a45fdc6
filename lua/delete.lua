#!lua
--[[ delete: remove a task in any status, with its index entries.
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] pending zset       ponos:{ns}:tasks:pending
  KEYS[3] processing zset    ponos:{ns}:tasks:processing
  KEYS[4] completed zset     ponos:{ns}:tasks:completed
  KEYS[5] failed zset        ponos:{ns}:tasks:failed
  KEYS[6] event stream       ponos:{ns}:events
  Derived key: ARGV[4]..'avs:'..<the task's avs>..':pending' (same hash tag)
  ARGV[1] now (ms) or ''
  ARGV[2] events maxlen
  ARGV[3] task id
  ARGV[4] key prefix         ponos:{ns}:
  Returns {'OK'} | {'NOTFOUND'} ]]
local task_key, events_key = KEYS[1], KEYS[6]
local now = now_ms(ARGV[1])
local maxlen, id, prefix = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', task_key) == 0 then return {'NOTFOUND'} end
dequeue(task_key, KEYS[2], prefix, id)
for k = 3, 5 do redis.call('ZREM', KEYS[k], id) end
redis.call('DEL', task_key)
emit(events_key, maxlen, now, 'task.deleted', id)
return {'OK'}
