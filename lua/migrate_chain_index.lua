#!lua
--[[ migrate_chain_index: one bounded step of the schema 1 -> 2 migration: put the
  tasks of one status index, from an offset, into their chain's task index (score:
  block_number). It walks pending, processing, completed, failed, then set-aside,
  and records the next position (migration_cursor "<index 1-5>:<offset>") in the
  meta hash with the batch, so a migration that was interrupted resumes where it
  stopped; after the last index it clears the migration: stores may open again.
  Adding a task that is already indexed changes nothing, so repeating a step is
  harmless. Nothing else writes while it runs (replicas of the old version are
  stopped by the new version, new ones refuse to open), so offsets stay valid.
  KEYS[1] meta hash          ponos:{ns}:meta (also KEYS[#KEYS], which the store appends)
  KEYS[2] pending zset       ponos:{ns}:tasks:pending
  KEYS[3] processing zset    ponos:{ns}:tasks:processing
  KEYS[4] completed zset     ponos:{ns}:tasks:completed
  KEYS[5] failed zset        ponos:{ns}:tasks:failed
  KEYS[6] set-aside zset     ponos:{ns}:set-aside
  ARGV[1] batch size (at most 1000 whatever is asked)
  ARGV[2] the namespace's key prefix ponos:{ns}:
  Derived key: ponos:{ns}:task:<id> of each task walked, and its chain's task index
    ponos:{ns}:chain:<chain_id>:tasks (a chain_id that is not a decimal integer is skipped)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', looked_at, added, done: 1 | 0, cursor} | {'IDLE', migration} | {'LOST', epoch} ]]
local meta_key = KEYS[1]
local indexes = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local batch = math.floor(tonumber(ARGV[1]) or 1000)
if batch > 1000 then batch = 1000 end
if batch < 1 then batch = 1 end
local prefix = ARGV[2]
local cur = redis.call('HMGET', meta_key, 'epoch', 'migration', 'migration_cursor')
if cur[1] ~= ARGV[#ARGV] then return {'LOST', cur[1] or ''} end
if cur[2] ~= '1->2' then return {'IDLE', cur[2] or ''} end
local which, offset = string.match(cur[3] or '', '^(%d+):(%d+)$')
which, offset = tonumber(which) or 1, tonumber(offset) or 0
local looked_at, added = 0, 0
if which <= #indexes then
  local ids = redis.call('ZRANGE', indexes[which], offset, offset + batch - 1)
  looked_at = #ids
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', prefix .. 'task:' .. id, 'chain_id', 'block_number')
    if f[1] and string.match(f[1], '^%d+$') and tonumber(f[2]) then
      added = added + redis.call('ZADD', prefix .. 'chain:' .. f[1] .. ':tasks', f[2], id)
    end
  end
  if looked_at < batch then
    which, offset = which + 1, 0
  else
    offset = offset + looked_at
  end
end
if which > #indexes then
  redis.call('HDEL', meta_key, 'migration', 'migration_cursor')
  return {'OK', looked_at, added, 1, ''}
end
local cursor = int(which) .. ':' .. int(offset)
redis.call('HSET', meta_key, 'migration_cursor', cursor)
return {'OK', looked_at, added, 0, cursor}
