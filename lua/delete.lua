#!lua
--[[ delete: remove a task in any status, with its index entries (also a set-aside one).
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] pending zset       ponos:{ns}:tasks:pending
  KEYS[3] processing zset    ponos:{ns}:tasks:processing
  KEYS[4] completed zset     ponos:{ns}:tasks:completed
  KEYS[5] failed zset        ponos:{ns}:tasks:failed
  KEYS[6] event stream       ponos:{ns}:events
  KEYS[7] set-aside zset     ponos:{ns}:set-aside
  Derived keys (same hash tag): ARGV[4]..'avs:'..<the task's avs>..':pending', and the
          chain task index ARGV[4]..'chain:'..<the task's chain_id field>..':tasks'
  ARGV[1] now (ms) or ''
  ARGV[2] events maxlen
  ARGV[3] task id
  ARGV[4] key prefix         ponos:{ns}:
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'NOTFOUND'} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, events_key = KEYS[1], KEYS[6]
local now = now_ms(ARGV[1])
local maxlen, id, prefix = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', task_key) == 0 then return {'NOTFOUND'} end
local chain_id = redis.call('HGET', task_key, 'chain_id')
dequeue(task_key, KEYS[2], prefix, id)
if chain_id then redis.call('ZREM', prefix .. 'chain:' .. chain_id .. ':tasks', id) end
for k = 3, 5 do redis.call('ZREM', KEYS[k], id) end
redis.call('ZREM', KEYS[7], id)
redis.call('DEL', task_key)
emit(events_key, maxlen, now, 'task.deleted', id)
return {'OK'}
