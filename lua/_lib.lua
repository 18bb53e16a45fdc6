--[[ _lib: helpers the loader places after the first line of every script.
  Not a transition of its own: it defines local functions only and touches no key. ]]

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
