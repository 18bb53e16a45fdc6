#!lua
--[[ rewind: move a chain's cursor back after a reorg and drop the block records
  above it, in one step (rewind_chain), optionally fenced.
  KEYS[1] chain hash         ponos:{ns}:chain:<chain_id>
  KEYS[2] blocks hash        ponos:{ns}:chain:<chain_id>:blocks
  KEYS[3] block index zset   ponos:{ns}:chain:<chain_id>:block-index
  KEYS[4] event stream       ponos:{ns}:events
  ARGV[1] now (ms) or ''
  ARGV[2] block number
  ARGV[3] fence token, or '' for none
  ARGV[4] events maxlen
  ARGV[5] chain id
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'NOTFOUND'} | {'STALE', current} | {'TRANSITION', cursor} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local chain_key, blocks_key, index_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms(ARGV[1])
local block, fence, maxlen, chain_id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('HMGET', chain_key, 'last_block', 'lease_token', 'lease_expires_at')
if fence ~= '' and (cur[2] ~= fence or tonumber(cur[3]) <= now) then
  return {'STALE', cur[2] or ''}
end
if not cur[1] then return {'NOTFOUND'} end
if block > tonumber(cur[1]) then return {'TRANSITION', cur[1]} end
local above = redis.call('ZRANGEBYSCORE', index_key, '(' .. int(block), '+inf')
for i = 1, #above, 500 do
  redis.call('HDEL', blocks_key, unpack(above, i, math.min(i + 499, #above)))
end
redis.call('ZREMRANGEBYSCORE', index_key, '(' .. int(block), '+inf')
redis.call('HSET', chain_key, 'last_block', int(block))
if fence == '' then fence = false end
emit(events_key, maxlen, now, 'chain.rewound', chain_id, false, false, fence)
return {'OK'}
