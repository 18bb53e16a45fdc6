#!lua
--[[ advance: move a chain's cursor forward (set_last_processed_block), optionally
  fenced by the chain lease's token. Same value: no-op; lower: refused.
  KEYS[1] chain hash         ponos:{ns}:chain:<chain_id>
  KEYS[2] event stream       ponos:{ns}:events
  ARGV[1] now (ms) or ''
  ARGV[2] block number
  ARGV[3] fence token, or '' for none
  ARGV[4] events maxlen
  ARGV[5] chain id
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'OK', 'NOOP'} | {'STALE', current} | {'TRANSITION', cursor} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local chain_key, events_key = KEYS[1], KEYS[2]
local now = now_ms(ARGV[1])
local block, fence, maxlen, chain_id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('HMGET', chain_key, 'last_block', 'lease_token', 'lease_expires_at')
if fence ~= '' and (cur[2] ~= fence or tonumber(cur[3]) <= now) then
  return {'STALE', cur[2] or ''}
end
if cur[1] then
  local at = tonumber(cur[1])
  if block < at then return {'TRANSITION', cur[1]} end
  if block == at then return {'OK', 'NOOP'} end
end
redis.call('HSET', chain_key, 'last_block', int(block))
if fence == '' then fence = false end
emit(events_key, maxlen, now, 'chain.advanced', chain_id, false, false, fence)
return {'OK'}
