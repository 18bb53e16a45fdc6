#!lua
--[[ namespace_open: what a store does first: find the namespace's epoch, or
  create the namespace (schema version, creation time, a new epoch) when it does
  not exist and creating is allowed. A namespace from before epochs existed gets
  one. Every writing script then checks the epoch and the schema version (the
  namespace guard). The store compares the version with its own, and refuses a
  namespace whose migration has not finished (`migration` in the meta hash).
  KEYS[1] meta hash          ponos:{ns}:meta
  ARGV[1] now (ms) or ''
  ARGV[2] the schema version this library writes
  ARGV[3] a new epoch id, used only if the namespace gets one now
  ARGV[4] create: '1' to create a missing namespace, '0' to refuse
  Returns {'OK', epoch, schema_version, created: 1 | 0, migration or ''} | {'MISSING'} ]]
local meta_key = KEYS[1]
local now = now_ms(ARGV[1])
local version, new_epoch, create = ARGV[2], ARGV[3], ARGV[4] == '1'
local cur = redis.call('HMGET', meta_key, 'epoch', 'schema_version', 'migration')
if cur[1] then return {'OK', cur[1], cur[2] or '', 0, cur[3] or ''} end
if not cur[2] and not create then return {'MISSING'} end
local created = 0
if not cur[2] then
  redis.call('HSET', meta_key, 'schema_version', version, 'created_at', int(now))
  created = 1
end
redis.call('HSET', meta_key, 'epoch', new_epoch)
return {'OK', new_epoch, redis.call('HGET', meta_key, 'schema_version'), created, cur[3] or ''}
