#!lua
--[[ save: create pending tasks, all or nothing (save_task, save_tasks).
  A task already stored with identical fields is skipped; a different task
  under an existing id refuses the whole batch before any write. Replay-safe:
  a retried call (same save id) counts the tasks its first attempt created.
  KEYS[1]        seq counter        ponos:{ns}:seq
  KEYS[2]        pending zset       ponos:{ns}:tasks:pending
  KEYS[3]        event stream       ponos:{ns}:events
  KEYS[1+3i]     task hash          ponos:{ns}:task:<id>          (task i = 1..n)
  KEYS[2+3i]     AVS pending zset   ponos:{ns}:avs:<avs>:pending
  KEYS[3+3i]     chain task index   ponos:{ns}:chain:<chain_id>:tasks (score: block_number)
  ARGV[1]        now (ms) or '' for the server's TIME
  ARGV[2]        events maxlen
  ARGV[3]        save id (unique per call, the same on its retries)
  ARGV[4]        f, the number of task fields
  ARGV[5..4+f]   the task field names
  ARGV[5+f+(i-1)*f ..]  the field values of task i, in that order
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Bounded work: at most 500 tasks per call (the store splits larger batches).
  Returns {'OK', created} | {'EXISTS', task_id} | {'TOOMANY', n} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local seq_key, pending_key, events_key = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms(ARGV[1])
local maxlen, save_id = ARGV[2], ARGV[3]
local f = tonumber(ARGV[4])
local n = (#KEYS - 4) / 3
if n > 500 then return {'TOOMANY', int(n)} end  -- the store saves at most 500 per call
local names = {}
local id_pos, block_pos
for j = 1, f do
  names[j] = ARGV[4 + j]
  if names[j] == 'task_id' then id_pos = j end
  if names[j] == 'block_number' then block_pos = j end
end

local function value(i, j) return ARGV[4 + f + (i - 1) * f + j] end

-- Guards first: every task is new or identical.
local is_new = {}
local replayed = 0
for i = 1, n do
  local task_key = KEYS[1 + 3 * i]
  if redis.call('EXISTS', task_key) == 1 then
    local stored = redis.call('HMGET', task_key, unpack(names))
    for j = 1, f do
      if (stored[j] or '') ~= value(i, j) then return {'EXISTS', value(i, id_pos)} end
    end
    is_new[i] = false
    if redis.call('HGET', task_key, 'save_id') == save_id then replayed = replayed + 1 end
  else
    is_new[i] = true
  end
end

local created = replayed
for i = 1, n do
  if is_new[i] then
    local task_key = KEYS[1 + 3 * i]
    local id = value(i, id_pos)
    local seq = redis.call('INCR', seq_key)
    local fields = {}
    for j = 1, f do
      fields[#fields + 1] = names[j]
      fields[#fields + 1] = value(i, j)
    end
    redis.call('HSET', task_key, 'status', 'pending', 'seq', int(seq), 'attempts', '0',
      'created_at', int(now), 'updated_at', int(now), 'save_id', save_id, unpack(fields))
    redis.call('ZADD', pending_key, seq, id)
    redis.call('ZADD', KEYS[2 + 3 * i], seq, id)
    redis.call('ZADD', KEYS[3 + 3 * i], value(i, block_pos), id)
    emit(events_key, maxlen, now, 'task.saved', id, 'pending')
    created = created + 1
  end
end
return {'OK', created}
