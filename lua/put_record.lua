#!lua
--[[ put_record: save or replace an executor record (performer, inflight task)
  and index it.
  KEYS[1] record hash        ponos:{ns}:performer:<id> | ponos:{ns}:inflight:<id>
  KEYS[2] index zset         ponos:{ns}:performers | ponos:{ns}:inflight-index
  ARGV[1] id
  ARGV[2..] field, value, field, value ...
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2, #ARGV - 1))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'OK'}
