#!lua
--[[ delete_block: remove one block record.
  KEYS[1] blocks hash        ponos:{ns}:chain:<chain_id>:blocks
  KEYS[2] block index zset   ponos:{ns}:chain:<chain_id>:block-index
  ARGV[1] block number
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'NOTFOUND'} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {'NOTFOUND'} end
redis.call('ZREM', KEYS[2], ARGV[1])
return {'OK'}
