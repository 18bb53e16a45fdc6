#!lua
--[[ mark_processed: set-if-absent of a task's de-duplication marker. The marker
  holds its expiry (ms, by the clock in use) and carries a TTL of the same length.
  KEYS[1] marker             ponos:{ns}:processed:<task_id>
  ARGV[1] now (ms) or ''
  ARGV[2] ttl (ms)
  Returns 1 marked now | 0 already marked ]]
local now = now_ms(ARGV[1])
local ttl = tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) and tonumber(cur) > now then return 0 end
redis.call('SET', KEYS[1], int(now + ttl), 'PX', int(ttl))
return 1
