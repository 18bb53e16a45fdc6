#!lua
--[[ put_hash: save or replace a whole record hash (config cache entries).
  KEYS[1] record hash        ponos:{ns}:opset:<avs>:<set_id> | ponos:{ns}:avs:<avs>:config
  ARGV[1..] field, value, field, value ...
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 1, #ARGV - 1))
return {'OK'}
