#!lua
--[[ delete_record: remove an executor record and its index entry.
  KEYS[1] record hash        ponos:{ns}:performer:<id> | ponos:{ns}:inflight:<id>
  KEYS[2] index zset         ponos:{ns}:performers | ponos:{ns}:inflight-index
  ARGV[1] id
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'NOTFOUND'} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('DEL', KEYS[1]) == 0 then return {'NOTFOUND'} end
return {'OK'}
