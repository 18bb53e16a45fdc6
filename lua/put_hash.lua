#!lua
--[[ put_hash: save or replace a whole record hash (config cache entries).
  KEYS[1] record hash        ponos:{ns}:opset:<avs>:<set_id> | ponos:{ns}:avs:<avs>:config
  ARGV[1..] field, value, field, value ...
  Returns {'OK'} ]]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return {'OK'}
