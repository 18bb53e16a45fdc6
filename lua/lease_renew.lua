#!lua
--[[ lease_renew: extend the current, live chain lease, keeping its token.
  KEYS[1] chain hash         ponos:{ns}:chain:<chain_id>
  ARGV[1] now (ms) or ''
  ARGV[2] owner
  ARGV[3] token
  ARGV[4] ttl (ms)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', expires_at} | {'STALE', current} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local chain_key = KEYS[1]
local now = now_ms(ARGV[1])
local owner, token, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local cur = redis.call('HMGET', chain_key, 'lease_owner', 'lease_token', 'lease_expires_at')
if cur[1] ~= owner or cur[2] ~= token or not cur[3] or tonumber(cur[3]) <= now then
  return {'STALE', cur[2] or ''}
end
local expires_at = int(now + ttl)
redis.call('HSET', chain_key, 'lease_expires_at', expires_at)
return {'OK', expires_at}
