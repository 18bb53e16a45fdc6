--[[ _lib: helpers the loader places after the first line of every script.
  Not a transition of its own: it defines local functions only and touches no key.
  The loader puts `local SCHEMA_VERSION = '<n>'` (keys.SCHEMA_VERSION) before it. ]]

-- Milliseconds of the server's clock, unless a test passed an explicit 'now'.
local function now_ms(override)
  if override ~= nil and override ~= '' then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as plain decimal text (never 1e+16).
local function int(n)
  return string.format('%d', n)
end

-- Append an event to the capped stream. status/owner/token may be false or nil.
local function emit(stream, maxlen, at, kind, subject, status, owner, token)
  local args = {stream, 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'subject', subject, 'at', int(at)}
  if status then args[#args + 1] = 'status'; args[#args + 1] = status end
  if owner then args[#args + 1] = 'owner'; args[#args + 1] = owner end
  if token then args[#args + 1] = 'token'; args[#args + 1] = token end
  redis.call('XADD', unpack(args))
end

-- The guard of every token operation: missing, then stale token, then wrong status.
-- Returns an error reply, or nil when the caller holds the task in `required`.
local function check_held(task_key, token, required)
  local cur = redis.call('HMGET', task_key, 'status', 'token')
  if not cur[1] then return {'NOTFOUND'} end
  if cur[2] ~= token then return {'STALE', cur[2] or ''} end
  if cur[1] ~= required then return {'TRANSITION', cur[1]} end
  return nil
end

-- Put a task (back) on the pending indexes at its original place in the queue.
local function enqueue(task_key, pending_key, prefix, task_id)
  local f = redis.call('HMGET', task_key, 'seq', 'avs_address')
  redis.call('ZADD', pending_key, f[1], task_id)
  redis.call('ZADD', prefix .. 'avs:' .. f[2] .. ':pending', f[1], task_id)
end

local function dequeue(task_key, pending_key, prefix, task_id)
  local avs = redis.call('HGET', task_key, 'avs_address')
  redis.call('ZREM', pending_key, task_id)
  if avs then redis.call('ZREM', prefix .. 'avs:' .. avs .. ':pending', task_id) end
end

-- The namespace guard of every writing script. The store passes the meta hash as
-- the last KEYS slot and the epoch it opened as the last ARGV slot; a namespace that
-- vanished (data lost, FLUSHDB) or was re-created has another epoch or none.
-- SCHEMA_VERSION is the layout this script was written for (the loader defines it
-- before these helpers): a namespace migrated to another layout refuses the write, so
-- a replica of an older version still running after `ponos-redis migrate` stops
-- instead of writing the old layout.
-- Returns an error reply, or nil when the namespace is the one the store opened.
local function namespace_lost(meta_key, epoch)
  local cur = redis.call('HMGET', meta_key, 'epoch', 'schema_version')
  if cur[2] and cur[2] ~= SCHEMA_VERSION then return {'SCHEMA', cur[2], SCHEMA_VERSION, meta_key} end
  if cur[1] ~= epoch then return {'LOST', cur[1] or ''} end
  return nil
end

-- The next fencing token: one more than the last, and never below the clock in
-- microseconds (now_ms * 1000). A namespace whose counter was lost or rolled back
-- (a restart without its data, a failover to a replica that lagged) therefore
-- never hands out a token it handed out before, as long as fewer than 1000 tokens
-- per millisecond were issued on average and the servers' clocks agree to within
-- the time the loss took.
local function next_token(fence_key, now)
  local token = tonumber(redis.call('GET', fence_key) or '0') + 1
  if token < now * 1000 then token = now * 1000 end
  redis.call('SET', fence_key, int(token))
  return int(token)
end

-- Set aside a task record that cannot be read (a field edited by hand): off every
-- status index, onto the set-aside index, reported by an event; the hash is left
-- as it is for an operator to repair.
local function set_aside(task_key, set_aside_key, status_key, pending_key, prefix, id, now, events_key, maxlen)
  if status_key == pending_key then
    dequeue(task_key, pending_key, prefix, id)
  else
    redis.call('ZREM', status_key, id)
  end
  redis.call('ZADD', set_aside_key, now, id)
  emit(events_key, maxlen, now, 'task.set_aside', id)
end
