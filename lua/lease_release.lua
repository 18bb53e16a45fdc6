#!lua
--[[ lease_release: give a chain lease up. No lease: no-op; another token: refused
  (the new holder's lease is untouched); this token, live or expired: removed.
  The cursor stays.
  KEYS[1] chain hash         ponos:{ns}:chain:<chain_id>
  ARGV[1] token
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK'} | {'STALE', current} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local cur = redis.call('HGET', KEYS[1], 'lease_token')
if not cur then return {'OK'} end
if cur ~= ARGV[1] then return {'STALE', cur} end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_token', 'lease_expires_at')
return {'OK'}
