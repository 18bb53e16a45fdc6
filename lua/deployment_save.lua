#!lua
--[[ deployment_save: save or replace a deployment and add its status to the history.
  KEYS[1] deployment hash    ponos:{ns}:deployment:<id>
  KEYS[2] history stream     ponos:{ns}:history:<id>
  KEYS[3] deployments zset   ponos:{ns}:deployments
  ARGV[1] now (ms) or ''
  ARGV[2] history maxlen
  ARGV[3] deployment id
  ARGV[4..] field, value, field, value ... (includes status and error)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local deployment_key, history_key, index_key = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms(ARGV[1])
redis.call('DEL', deployment_key)
redis.call('HSET', deployment_key, unpack(ARGV, 4, #ARGV - 1))
redis.call('ZADD', index_key, 0, ARGV[3])
local f = redis.call('HMGET', deployment_key, 'status', 'error')
redis.call('XADD', history_key, 'MAXLEN', ARGV[2], '*', 'status', f[1], 'at', int(now), 'error', f[2])
return {'OK'}
