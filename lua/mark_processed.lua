#!lua
--[[ mark_processed: set-if-absent of a task's de-duplication marker. The marker
  holds "<expiry ms, by the clock in use>:<mark id>" and a TTL of the same length.
  Replay-safe: a retried call (same mark id) after a lost reply answers 1 again.
  KEYS[1] marker             ponos:{ns}:processed:<task_id>
  ARGV[1] now (ms) or ''
  ARGV[2] ttl (ms)
  ARGV[3] mark id (unique per call, the same on its retries)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns 1 marked by this call | 0 already marked | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local now = now_ms(ARGV[1])
local ttl, mark_id = tonumber(ARGV[2]), ARGV[3]
local cur = redis.call('GET', KEYS[1])
if cur then
  local expires, by = string.match(cur, '^(%d+):(.*)$')
  if expires and tonumber(expires) > now then
    if by == mark_id then return 1 end
    return 0
  end
end
redis.call('SET', KEYS[1], int(now + ttl) .. ':' .. mark_id, 'PX', int(ttl))
return 1
