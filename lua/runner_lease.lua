#!lua
--[[ runner_lease: take or extend the single-runner lease of a periodic job
  (try_runner_lease), so one replica runs it per interval. Held live by another
  owner: refused; free, expired, or held by the same owner: taken until now + ttl.
  The value holds "<expiry ms, by the clock in use>:<owner>" and the key a TTL of
  the same length, so a lapsed lease vanishes. Replay-safe: a call retried after a
  lost reply finds its own owner and extends the lease again.
  KEYS[1] runner lease       ponos:{ns}:runner:<name>
  ARGV[1] now (ms) or ''
  ARGV[2] owner
  ARGV[3] ttl (ms)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', expires_at} | {'HELD', owner} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local lease_key = KEYS[1]
local now = now_ms(ARGV[1])
local owner, ttl = ARGV[2], tonumber(ARGV[3])
local cur = redis.call('GET', lease_key)
if cur then
  local expires, by = string.match(cur, '^(%d+):(.*)$')
  if expires and tonumber(expires) > now and by ~= owner then return {'HELD', by} end
end
local expires_at = int(now + ttl)
redis.call('SET', lease_key, expires_at .. ':' .. owner, 'PX', int(ttl))
return {'OK', expires_at}
