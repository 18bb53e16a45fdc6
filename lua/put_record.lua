#!lua
--[[ put_record: save or replace an executor record (performer, inflight task)
  and index it.
  KEYS[1] record hash        ponos:{ns}:performer:<id> | ponos:{ns}:inflight:<id>
  KEYS[2] index zset         ponos:{ns}:performers | ponos:{ns}:inflight-index
  ARGV[1] id
  ARGV[2..] field, value, field, value ...
  Returns {'OK'} ]]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'OK'}
