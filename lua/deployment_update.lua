#!lua
--[[ deployment_update: move a deployment along the table of
  ponos_redis/transitions.py (DEPLOYMENT_TRANSITIONS; a unit test compares them)
  and add the change to its history. Same status: no-op.
  KEYS[1] deployment hash    ponos:{ns}:deployment:<id>
  KEYS[2] history stream     ponos:{ns}:history:<id>
  ARGV[1] now (ms) or ''
  ARGV[2] target status
  ARGV[3] error ('' keeps the current one)
  ARGV[4] history maxlen
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'OK', 'NOOP'} | {'NOTFOUND'} | {'TRANSITION', status} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local deployment_key, history_key = KEYS[1], KEYS[2]
local now = now_ms(ARGV[1])
local target, err, maxlen = ARGV[2], ARGV[3], ARGV[4]
local ALLOWED = {
  pending = {deploying = true, failed = true},
  deploying = {running = true, failed = true},
  running = {},
  failed = {},
}
local cur = redis.call('HMGET', deployment_key, 'status', 'error')
if not cur[1] then return {'NOTFOUND'} end
if cur[1] == target then return {'OK', 'NOOP'} end
if not ALLOWED[cur[1]] or not ALLOWED[cur[1]][target] then return {'TRANSITION', cur[1]} end
if err == '' then err = cur[2] or '' end
redis.call('HSET', deployment_key, 'status', target, 'error', err)
if target == 'running' or target == 'failed' then
  redis.call('HSET', deployment_key, 'completed_at', int(now))
end
redis.call('XADD', history_key, 'MAXLEN', maxlen, '*', 'status', target, 'at', int(now), 'error', err)
return {'OK'}
