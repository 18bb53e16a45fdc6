#!lua
--[[ renew: extend the lease of a processing task, for the current token only
  (an expired lease that was not reaped yet can still be renewed).
  KEYS[1] task hash          ponos:{ns}:task:<id>
  KEYS[2] processing zset    ponos:{ns}:tasks:processing
  ARGV[1] now (ms) or ''
  ARGV[2] token
  ARGV[3] lease (ms)
  ARGV[4] task id
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', lease_until} | {'NOTFOUND'} | {'STALE', current} | {'TRANSITION', status} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local task_key, processing_key = KEYS[1], KEYS[2]
local now = now_ms(ARGV[1])
local token, lease_ms, id = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local refused = check_held(task_key, token, 'processing')
if refused then return refused end
local lease_until = now + lease_ms
redis.call('HSET', task_key, 'lease_until', int(lease_until), 'updated_at', int(now))
redis.call('ZADD', processing_key, lease_until, id)
return {'OK', int(lease_until)}
