#!lua flags=no-writes
--[[ is_processed: whether a task's de-duplication marker is set and unexpired.
  KEYS[1] marker             ponos:{ns}:processed:<task_id>
  ARGV[1] now (ms) or ''
  Returns 1 | 0 ]]
local now = now_ms(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) and tonumber(cur) > now then return 1 end
return 0
