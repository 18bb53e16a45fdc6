#!lua flags=no-writes
--[[ is_processed: whether a task's de-duplication marker is set and unexpired.
  KEYS[1] marker             ponos:{ns}:processed:<task_id>
  ARGV[1] now (ms) or ''
  Returns 1 | 0 ]]
local now = now_ms(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then
  local expires = string.match(cur, '^(%d+):')
  if expires and tonumber(expires) > now then return 1 end
end
return 0
