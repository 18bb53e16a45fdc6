#!lua
--[[ lease_acquire: take a chain's lease. Held live by another owner: refused;
  held live by the same owner: renewed with the same token; free or expired:
  a new, higher token.
  KEYS[1] chain hash         ponos:{ns}:chain:<chain_id>
  KEYS[2] fence counter      ponos:{ns}:fence
  ARGV[1] now (ms) or ''
  ARGV[2] owner
  ARGV[3] ttl (ms)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', token, expires_at} | {'HELD', owner} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local chain_key, fence_key = KEYS[1], KEYS[2]
local now = now_ms(ARGV[1])
local owner, ttl = ARGV[2], tonumber(ARGV[3])
local cur = redis.call('HMGET', chain_key, 'lease_owner', 'lease_token', 'lease_expires_at')
local token
if cur[3] and tonumber(cur[3]) > now then
  if cur[1] ~= owner then return {'HELD', cur[1]} end
  token = cur[2]
else
  token = next_token(fence_key, now)
end
local expires_at = int(now + ttl)
redis.call('HSET', chain_key, 'lease_owner', owner, 'lease_token', token, 'lease_expires_at', expires_at)
return {'OK', token, expires_at}
