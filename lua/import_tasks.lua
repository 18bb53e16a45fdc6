#!lua
--[[ import_tasks: write tasks as an export gave them (ponos-redis import): status,
  attempts, owner, lease, token, last error and queue position included, with
  every index. A task already stored with the same fields is skipped (importing a
  file twice changes nothing); a different one refuses the whole call before any
  write. Raises the seq and fence counters to at least the floors given and the
  largest seq and token written, so the queue keeps its order and tokens only grow.
  With check = '1' it runs the guards only and writes nothing. Replay-safe: a
  retried call (same import id) counts the tasks its first attempt wrote.
  KEYS[1]        seq counter          ponos:{ns}:seq
  KEYS[2]        fence counter        ponos:{ns}:fence
  KEYS[3]        pending zset         ponos:{ns}:tasks:pending
  KEYS[4]        processing zset      ponos:{ns}:tasks:processing
  KEYS[5]        completed zset       ponos:{ns}:tasks:completed
  KEYS[6]        failed zset          ponos:{ns}:tasks:failed
  KEYS[4+3i]     task hash            ponos:{ns}:task:<id>          (task i = 1..n)
  KEYS[5+3i]     AVS pending zset     ponos:{ns}:avs:<avs>:pending
  KEYS[6+3i]     chain task index     ponos:{ns}:chain:<chain_id>:tasks (score: block_number)
  ARGV[1]        check: '1' to run the guards only, '0' to write
  ARGV[2]        import id (unique per call, the same on its retries)
  ARGV[3]        seq floor (the exported seq counter) or '0'
  ARGV[4]        fence floor (the exported fence counter) or '0'
  ARGV[5]        f, the number of values packed for each task
  ARGV[6..5+f]   their names: the task's fields but the payload, then status, seq, attempts,
                 created_at, updated_at, owner, token, lease_until, last_error, and last
                 'absent': the names of the fields the task has no value for, comma-separated
  ARGV[4+f+2i]   the values of task i, in that order: a MessagePack array of f strings
  ARGV[5+f+2i]   the payload of task i (raw bytes)
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Bounded work: at most 500 tasks per call (the caller splits larger imports).
  Returns {'OK', written, identical} | {'CONFLICT', task_id, field} | {'INVALID', task_id, field}
    | {'TOOMANY', n} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local seq_key, fence_key = KEYS[1], KEYS[2]
local index_of = {pending = KEYS[3], processing = KEYS[4], completed = KEYS[5], failed = KEYS[6]}
local check_only, import_id = ARGV[1] == '1', ARGV[2]
local seq_floor, fence_floor = tonumber(ARGV[3]) or 0, tonumber(ARGV[4]) or 0
local f = tonumber(ARGV[5])
local n = (#KEYS - 7) / 3
if n > 500 then return {'TOOMANY', int(n)} end  -- the caller imports at most 500 per call
local names, pos = {}, {}
for j = 1, f do
  names[j] = ARGV[5 + j]
  pos[names[j]] = j
end
if #ARGV ~= 6 + f + 2 * n then return {'INVALID', '', 'argv'} end
local rows = {}
for i = 1, n do
  local packed = ARGV[4 + f + 2 * i]
  rows[i] = cmsgpack.unpack(packed)
  if type(rows[i]) ~= 'table' or #rows[i] ~= f then return {'INVALID', int(i), 'values'} end
end

local function value(i, j) return rows[i][j] end
local function field(i, name) return rows[i][pos[name]] end
local function payload(i) return ARGV[5 + f + 2 * i] end
-- The fields task i has no value for (absent from its hash, as the stores leave them).
local function absent(i)
  local set = {absent = true}
  for name in string.gmatch(field(i, 'absent'), '[^,]+') do set[name] = true end
  return set
end

-- Guards first: every task is valid enough to index, and new or identical.
local is_new = {}
local written, identical = 0, 0
local max_seq, max_token = seq_floor, fence_floor
for i = 1, n do
  local id = field(i, 'task_id')
  local status = field(i, 'status')
  local score_field = ({pending = 'seq', processing = 'lease_until', completed = 'updated_at',
    failed = 'updated_at'})[status]
  if not score_field then return {'INVALID', id, 'status'} end
  for _, name in ipairs({'seq', 'block_number', score_field}) do
    if not tonumber(field(i, name)) then return {'INVALID', id, name} end
  end
  local task_key = KEYS[4 + 3 * i]
  if redis.call('EXISTS', task_key) == 1 then
    local stored = redis.call('HMGET', task_key, 'payload', unpack(names))
    if stored[1] ~= payload(i) then return {'CONFLICT', id, 'payload'} end
    local none = absent(i)
    for j = 1, f do
      if names[j] ~= 'absent' then
        local want = value(i, j)
        if none[names[j]] then want = false end
        if stored[j + 1] ~= want then return {'CONFLICT', id, names[j]} end
      end
    end
    is_new[i] = false
    if redis.call('HGET', task_key, 'save_id') == import_id then
      written = written + 1
    else
      identical = identical + 1
    end
  else
    is_new[i] = true
    written = written + 1
  end
  local seq, token = tonumber(field(i, 'seq')), tonumber(field(i, 'token'))
  if seq > max_seq then max_seq = seq end
  if token and token > max_token then max_token = token end
end
if check_only then return {'OK', written, identical} end

for i = 1, n do
  if is_new[i] then
    local task_key = KEYS[4 + 3 * i]
    local id, status = field(i, 'task_id'), field(i, 'status')
    local fields = {'save_id', import_id, 'payload', payload(i)}
    local none = absent(i)
    for j = 1, f do
      if not none[names[j]] then
        fields[#fields + 1] = names[j]
        fields[#fields + 1] = value(i, j)
      end
    end
    redis.call('HSET', task_key, unpack(fields))
    if status == 'pending' then
      redis.call('ZADD', index_of.pending, field(i, 'seq'), id)
      redis.call('ZADD', KEYS[5 + 3 * i], field(i, 'seq'), id)
    elseif status == 'processing' then
      redis.call('ZADD', index_of.processing, field(i, 'lease_until'), id)
    else
      redis.call('ZADD', index_of[status], field(i, 'updated_at'), id)
    end
    redis.call('ZADD', KEYS[6 + 3 * i], field(i, 'block_number'), id)
  end
end
if max_seq > tonumber(redis.call('GET', seq_key) or '0') then
  redis.call('SET', seq_key, int(max_seq))
end
if max_token > tonumber(redis.call('GET', fence_key) or '0') then
  redis.call('SET', fence_key, int(max_token))
end
return {'OK', written, identical}
