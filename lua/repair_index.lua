#!lua
--[[ repair_index: drop index entries whose record is gone (ponos-redis doctor --repair).
  Each entry is checked when the script runs, so one whose record came back in the
  meantime stays: it is dropped only if its record hash does not exist, or (mode
  'pending', for the AVS pending indexes) the record is not pending any more. Each
  drop appends an 'index.repaired' event (owner 'manual'). At most 500 entries a call.
  KEYS[1] event stream       ponos:{ns}:events
  KEYS[2 + 2 * i] an index zset, for entry i = 0 .. n-1   e.g. ponos:{ns}:tasks:pending
  KEYS[3 + 2 * i] the record hash entry i names           e.g. ponos:{ns}:task:<id>
  ARGV[1] now (ms) or ''
  ARGV[2] events maxlen
  ARGV[3 + 2 * i] entry i: the member of its index (the record's id)
  ARGV[4 + 2 * i] entry i's mode: 'gone' or 'pending'
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Returns {'OK', i of each entry dropped ...} | {'TOOMANY', n} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local events_key = KEYS[1]
local now = now_ms(ARGV[1])
local maxlen = ARGV[2]
local n = (#KEYS - 2) / 2
if n > 500 then return {'TOOMANY', n} end
local dropped = {}
for i = 0, n - 1 do
  local index_key, record_key = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local id, mode = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local stale = redis.call('EXISTS', record_key) == 0
  if not stale and mode == 'pending' then
    stale = redis.call('HGET', record_key, 'status') ~= 'pending'
  end
  if stale and redis.call('ZSCORE', index_key, id) then
    redis.call('ZREM', index_key, id)
    emit(events_key, maxlen, now, 'index.repaired', id, false, 'manual', false)
    dropped[#dropped + 1] = i
  end
end
return {'OK', unpack(dropped)}
