#!lua
--[[ migrate_begin: start, or resume, moving a namespace from one schema version
  to the next (ponos-redis migrate). It sets schema_version to the new version at
  once, so a replica still running the old version stops at its next write (the
  namespace guard of its scripts), and records the migration and where it stands
  (migration, migration_cursor) in the meta hash: stores refuse to open until the
  migration's steps have finished and cleared them. From version 1, whose
  replicas' scripts predate the schema check, it also gives the namespace a new
  epoch, so those stop too (NamespaceLostError). It checks the epoch itself
  rather than through namespace_lost, whose version check would refuse it.
  KEYS[1] meta hash          ponos:{ns}:meta (also KEYS[#KEYS], which the store appends)
  ARGV[1] from version
  ARGV[2] to version
  ARGV[3] a new epoch id, used when moving from version 1
  KEYS[#KEYS] meta hash      ponos:{ns}:meta
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', epoch, cursor, started: 1 | 0 (resumed)} | {'SCHEMA', found, expected, meta}
    | {'BUSY', migration} | {'LOST', epoch} ]]
local meta_key = KEYS[1]
local from, to, new_epoch = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HMGET', meta_key, 'epoch', 'schema_version', 'migration', 'migration_cursor')
if cur[1] ~= ARGV[#ARGV] then return {'LOST', cur[1] or ''} end
local marker = from .. '->' .. to
if cur[3] == marker and cur[2] == to then return {'OK', cur[1], cur[4] or '', 0} end
if cur[3] then return {'BUSY', cur[3]} end
if cur[2] ~= from then return {'SCHEMA', cur[2] or '', from, meta_key} end
local epoch = cur[1]
if from == '1' then epoch = new_epoch end
redis.call('HSET', meta_key, 'schema_version', to, 'migration', marker, 'migration_cursor', '1:0',
  'epoch', epoch)
return {'OK', epoch, '1:0', 1}
