#!lua
--[[ save_block: save or replace a block record, keeping only the newest
  `window` block numbers of the chain.
  KEYS[1] blocks hash        ponos:{ns}:chain:<chain_id>:blocks
  KEYS[2] block index zset   ponos:{ns}:chain:<chain_id>:block-index
  ARGV[1] block number
  ARGV[2] the record (JSON: hash, parent_hash, timestamp)
  ARGV[3] window
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', dropped} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local blocks_key, index_key = KEYS[1], KEYS[2]
local number, body, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('HSET', blocks_key, number, body)
redis.call('ZADD', index_key, number, number)
local top = redis.call('ZREVRANGE', index_key, 0, 0, 'WITHSCORES')
local floor = tonumber(top[2]) - window
local old = redis.call('ZRANGEBYSCORE', index_key, '-inf', floor)
for i = 1, #old, 500 do
  redis.call('HDEL', blocks_key, unpack(old, i, math.min(i + 499, #old)))
end
redis.call('ZREMRANGEBYSCORE', index_key, '-inf', floor)
return {'OK', #old}
