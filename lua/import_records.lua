#!lua
--[[ import_records: write the records of an export other than tasks (ponos-redis
  import): chain cursors and leases, block records, the config cache, performers,
  inflight tasks, deployments with their history, processed markers. A record
  already stored the same is skipped (importing twice changes nothing); a different
  one refuses the whole call before any write. A processed marker already there is
  kept (both say the task was processed); one whose expiry has passed is not
  written. With check = '1' it runs the guards only and writes nothing.
  Each record i = 1..n has three KEYS slots and a run of ARGV: kind, member, c,
  then c values. Kinds:
    hash        KEYS[3i-2] the hash (chain, opset, avs config); values: field, value ...
    indexed     KEYS[3i-2] the hash, KEYS[3i-1] its index zset (score 0, member: the id)
    deployment  KEYS[3i-2] the hash, KEYS[3i-1] the deployments zset, KEYS[3i] the
                history stream; values: p, p field/value pairs, then status, at, error
                of each history entry, oldest first
    block       KEYS[3i-2] the blocks hash, KEYS[3i-1] the block index zset;
                member: the block number; values: the record (JSON)
    marker      KEYS[3i-2] the processed marker; values: its expiry (ms)
  Unused slots repeat the record's key.
  KEYS[3i-2]     the record's key      (record i = 1..n)
  KEYS[3i-1]     its index, or the record's key again
  KEYS[3i]       its history stream, or the record's key again
  ARGV[1]        check: '1' to run the guards only, '0' to write
  ARGV[2]        now (ms) or '' for the server's TIME
  ARGV[3..]      the records: kind, member, c, then c values, for each record in turn
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Bounded work: at most 500 records and 10,000 deployment history entries a call.
  Returns {'OK', written, identical} | {'CONFLICT', kind, member} | {'TOOMANY', n}
    | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local check_only = ARGV[1] == '1'
local now = now_ms(ARGV[2])
local n = (#KEYS - 1) / 3
if n > 500 then return {'TOOMANY', int(n)} end

-- Read the records' runs of ARGV.
local records = {}
local p = 3
local history = 0
for i = 1, n do
  local c = tonumber(ARGV[p + 2])
  records[i] = {kind = ARGV[p], member = ARGV[p + 1], first = p + 3, count = c}
  if records[i].kind == 'deployment' then
    history = history + (c - 1 - 2 * tonumber(ARGV[p + 3])) / 3
  end
  p = p + 3 + c
end
if history > 10000 then return {'TOOMANY', int(history)} end

local function slice(first, last)
  local t = {}
  for k = first, last do t[#t + 1] = ARGV[k] end
  return t
end

local function same_hash(key, first, pairs_count)
  local stored = redis.call('HGETALL', key)
  if #stored == 0 then return nil end
  if #stored ~= 2 * pairs_count then return false end
  local have = {}
  for k = 1, #stored, 2 do have[stored[k]] = stored[k + 1] end
  for k = first, first + 2 * pairs_count - 1, 2 do
    if have[ARGV[k]] ~= ARGV[k + 1] then return false end
  end
  return true
end

-- 'absent', 'same' or 'conflict', for record i.
local function state(i)
  local r = records[i]
  local key = KEYS[3 * i - 2]
  if r.kind == 'hash' or r.kind == 'indexed' then
    local same = same_hash(key, r.first, r.count / 2)
    if same == nil then return 'absent' end
    return same and 'same' or 'conflict'
  elseif r.kind == 'deployment' then
    local pcount = tonumber(ARGV[r.first])
    local entries = (r.count - 1 - 2 * pcount) / 3
    local same = same_hash(key, r.first + 1, pcount)
    if same == nil then return 'absent' end
    if not same then return 'conflict' end
    local history = redis.call('XRANGE', KEYS[3 * i], '-', '+', 'COUNT', entries + 1)
    if #history ~= entries then return 'conflict' end
    local h = r.first + 1 + 2 * pcount
    for e = 1, entries do
      local fields = {}
      local flat = history[e][2]
      for k = 1, #flat, 2 do fields[flat[k]] = flat[k + 1] end
      local base = h + 3 * (e - 1)
      if fields.status ~= ARGV[base] or fields.at ~= ARGV[base + 1] or (fields.error or '') ~= ARGV[base + 2] then
        return 'conflict'
      end
    end
    return 'same'
  elseif r.kind == 'block' then
    local stored = redis.call('HGET', key, r.member)
    if not stored then return 'absent' end
    return stored == ARGV[r.first] and 'same' or 'conflict'
  elseif r.kind == 'marker' then
    if redis.call('EXISTS', key) == 1 then return 'same' end
    return 'absent'
  end
  return 'conflict'
end

local states = {}
local written, identical = 0, 0
for i = 1, n do
  local s = state(i)
  if s == 'conflict' then return {'CONFLICT', records[i].kind, records[i].member} end
  states[i] = s
  if s == 'same' then identical = identical + 1 else written = written + 1 end
end
if check_only then return {'OK', written, identical} end

for i = 1, n do
  if states[i] == 'absent' then
    local r = records[i]
    local key = KEYS[3 * i - 2]
    if r.kind == 'hash' or r.kind == 'indexed' then
      redis.call('HSET', key, unpack(slice(r.first, r.first + r.count - 1)))
      if r.kind == 'indexed' then redis.call('ZADD', KEYS[3 * i - 1], 0, r.member) end
    elseif r.kind == 'deployment' then
      local pcount = tonumber(ARGV[r.first])
      redis.call('HSET', key, unpack(slice(r.first + 1, r.first + 2 * pcount)))
      redis.call('ZADD', KEYS[3 * i - 1], 0, r.member)
      redis.call('DEL', KEYS[3 * i])
      for h = r.first + 1 + 2 * pcount, r.first + r.count - 1, 3 do
        redis.call('XADD', KEYS[3 * i], '*', 'status', ARGV[h], 'at', ARGV[h + 1], 'error', ARGV[h + 2])
      end
    elseif r.kind == 'block' then
      redis.call('HSET', key, r.member, ARGV[r.first])
      redis.call('ZADD', KEYS[3 * i - 1], r.member, r.member)
    elseif r.kind == 'marker' then
      local expires = tonumber(ARGV[r.first])
      if expires > now then
        redis.call('SET', key, int(expires) .. ':import', 'PX', int(expires - now))
      end
    end
  end
end
return {'OK', written, identical}
