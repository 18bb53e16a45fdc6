#!lua
--[[ fail_orphaned: after a reorg, fail the pending and processing tasks of one chain
  above a block (fail_orphaned_tasks), except the ids to keep. Each failed task gets
  a new token (a holder's later complete or renew is refused), last_error = the
  reason, and a task.failed event. Completed and failed tasks are left alone, and
  so is a set-aside one (its record waits for an operator).
  Optionally fenced by the chain lease's token: a fence that is not the live
  lease's refuses the call before any write.
  Bounded work: one call looks at one page of at most 1000 index entries above
  the block, from an offset (failed tasks stay in the index, so the store pages
  on by offset, less the entries this call removed), and reads at most 10,000 ids
  to keep.
  KEYS[1] chain task index   ponos:{ns}:chain:<chain_id>:tasks (score: block_number)
  KEYS[2] chain hash         ponos:{ns}:chain:<chain_id>
  KEYS[3] pending zset       ponos:{ns}:tasks:pending
  KEYS[4] processing zset    ponos:{ns}:tasks:processing
  KEYS[5] failed zset        ponos:{ns}:tasks:failed
  KEYS[6] fence counter      ponos:{ns}:fence
  KEYS[7] event stream       ponos:{ns}:events
  KEYS[8] set-aside zset     ponos:{ns}:set-aside
  KEYS[#KEYS] meta hash      ponos:{ns}:meta (the namespace guard)
  Derived keys (read from KEYS[1]; same hash tag):
          ARGV[7]..'task:'..<id>, ARGV[7]..'avs:'..<avs>..':pending'
  ARGV[1] now (ms) or ''
  ARGV[2] the block: tasks with block_number above it are failed
  ARGV[3] offset of this page among the index entries above the block
  ARGV[4] fence token, or '' for none
  ARGV[5] reason (the failed tasks' last_error)
  ARGV[6] events maxlen
  ARGV[7] key prefix         ponos:{ns}:
  ARGV[8] call id (unique per call, the same on its retries)
  ARGV[9] k, the number of ids to keep (at most 10,000)
  ARGV[10..9+k] the ids to keep
  ARGV[#ARGV] the namespace's epoch, as the store opened it
  Replay-safe: a failed task records the call id that failed it (orphaned_by), so a
  call retried after a lost reply reports the tasks its first attempt failed.
  Returns {'OK', looked_at, removed, failed id, ...}: looked_at < 1000 means the range
    is exhausted; removed counts index entries whose task was gone (dropped here)
    | {'STALE', current} | {'TOOMANY', k} | {'LOST', epoch} | {'SCHEMA', found, expected, meta} ]]
local lost = namespace_lost(KEYS[#KEYS], ARGV[#ARGV])
if lost then return lost end
local index_key, chain_key, pending_key, processing_key, failed_key, fence_key, events_key, set_aside_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = now_ms(ARGV[1])
local above, offset, fence, reason = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local maxlen, prefix, call_id, k = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local MAX_LOOKED_AT, MAX_KEEP = 1000, 10000
if k > MAX_KEEP then return {'TOOMANY', int(k)} end

if fence ~= '' then
  local cur = redis.call('HMGET', chain_key, 'lease_token', 'lease_expires_at')
  if cur[1] ~= fence or (tonumber(cur[2]) or 0) <= now then return {'STALE', cur[1] or ''} end
end

local keep = {}
for j = 10, 9 + k do keep[ARGV[j]] = true end

local ids = redis.call('ZRANGEBYSCORE', index_key, '(' .. int(above), '+inf', 'LIMIT', offset, MAX_LOOKED_AT)
local result = {'OK', #ids, 0}
local removed = 0
for _, id in ipairs(ids) do
  if not keep[id] then
    local task_key = prefix .. 'task:' .. id
    local f = redis.call('HMGET', task_key, 'status', 'owner', 'orphaned_by')
    local status = f[1]
    if not status then
      redis.call('ZREM', index_key, id)  -- an index entry whose task is gone
      removed = removed + 1
    elseif status == 'failed' and f[3] == call_id then
      result[#result + 1] = id  -- failed by an earlier attempt of this very call
    elseif (status == 'pending' or status == 'processing') and not redis.call('ZSCORE', set_aside_key, id) then
      if status == 'pending' then
        dequeue(task_key, pending_key, prefix, id)
      else
        redis.call('ZREM', processing_key, id)
      end
      local token = next_token(fence_key, now)
      redis.call('HSET', task_key, 'status', 'failed', 'token', token, 'last_error', reason,
        'updated_at', int(now), 'orphaned_by', call_id)
      redis.call('HDEL', task_key, 'lease_until')
      redis.call('ZADD', failed_key, now, id)
      emit(events_key, maxlen, now, 'task.failed', id, 'failed', f[2], token)
      result[#result + 1] = id
    end
  end
end
result[3] = removed
return result
