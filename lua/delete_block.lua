#!lua
--[[ delete_block: remove one block record.
  KEYS[1] blocks hash        ponos:{ns}:chain:<chain_id>:blocks
  KEYS[2] block index zset   ponos:{ns}:chain:<chain_id>:block-index
  ARGV[1] block number
  Returns {'OK'} | {'NOTFOUND'} ]]
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {'NOTFOUND'} end
redis.call('ZREM', KEYS[2], ARGV[1])
return {'OK'}
