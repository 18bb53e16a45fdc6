#!lua
--[[ delete_record: remove an executor record and its index entry.
  KEYS[1] record hash        ponos:{ns}:performer:<id> | ponos:{ns}:inflight:<id>
  KEYS[2] index zset         ponos:{ns}:performers | ponos:{ns}:inflight-index
  ARGV[1] id
  Returns {'OK'} | {'NOTFOUND'} ]]
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('DEL', KEYS[1]) == 0 then return {'NOTFOUND'} end
return {'OK'}
