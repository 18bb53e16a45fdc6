#!lua flags=no-writes
--[[ export_hashes: the fields of up to 1,000 record hashes in one call, for an
  export (ponos-redis export): one script reply costs the client far less than a
  pipeline of as many HGETALL. Reads only; the hashes are read at one instant.
  A key that no longer exists (deleted since the export's SCAN) gives an empty list.
  KEYS[1..n]  record hashes  ponos:{ns}:task:<id>, ponos:{ns}:chain:<chain_id>, ... (n <= 1000)
  KEYS[i]     record hash i, for i = 1..n
  ARGV[1]     n, the number of keys (as a check)
  Bounded work: at most 1,000 hashes per call.
  Returns {'OK', {field, value, ...} of KEYS[1], ..., of KEYS[n]} | {'TOOMANY', n} ]]
if #KEYS > 1000 or tonumber(ARGV[1]) ~= #KEYS then return {'TOOMANY', #KEYS} end
local result = {'OK'}
for i = 1, #KEYS do
  result[i + 1] = redis.call('HGETALL', KEYS[i])
end
return result
