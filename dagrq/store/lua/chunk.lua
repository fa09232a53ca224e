-- chunk.lua: what one item job of a mapped node reads, in one step, counting the items it
-- is about to run (items past the end, which the last chunk may name, and items whose result
-- is already recorded, say kept by a resume, are not counted: they are not run again).
--
-- KEYS[1]      run hash       dagrq:run:{id}                     read: state, params, plan,
--                                                                refresh
-- KEYS[2]      nodes hash     dagrq:run:{id}:nodes               read <node>:items_total,
--                                                                HINCRBY <node>:items_started
-- KEYS[3]      items hash     dagrq:run:{id}:items:<node>        (or the source map's results
--                                                                hash, for a map of a map)
-- KEYS[4]      results hash   dagrq:run:{id}:map:<node>          read: which items have one
-- KEYS[5..]    output strings dagrq:run:{id}:out:<p>             of the other data parents
-- ARGV[1]      node name
-- ARGV[2]      the first item index of the job (its items are consecutive)
-- ARGV[3]      how many items, n
--
-- Returns {run state, params, plan hash, items total, refresh (the nodes whose cache the run
-- ignores), recorded, item_1..item_n, out_1..out_k} (nil for what is missing; recorded has one
-- character per item, '1' when its result is recorded, else '0'), or {false} when the run does not exist. The started count grows only while the run
-- is running: it is the number of item executions begun (re-runs included).

local meta = redis.call('HMGET', KEYS[1], 'state', 'params', 'plan', 'refresh')
if not meta[1] then
  return {false}
end
local node, first, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local total = tonumber(redis.call('HGET', KEYS[2], node .. ':items_total') or '0')
local indices, valid, recorded = {}, 0, {}
for i = 1, n do indices[i] = tostring(first + i - 1) end
-- one HMGET for the whole chunk (not a HEXISTS per item): a fresh chunk's results are all nil
local kept = redis.call('HMGET', KEYS[4], unpack(indices))
for i = 1, n do
  recorded[i] = kept[i] and '1' or '0'
  if first + i - 1 < total and recorded[i] == '0' then
    valid = valid + 1
  end
end
if meta[1] == 'running' and valid > 0 then
  redis.call('HINCRBY', KEYS[2], node .. ':items_started', valid)
end
local reply = {meta[1], meta[2], meta[3], total, meta[4] or '', table.concat(recorded)}
local items = redis.call('HMGET', KEYS[3], unpack(indices))
for i = 1, n do reply[#reply + 1] = items[i] end
for k = 5, #KEYS do reply[#reply + 1] = redis.call('GET', KEYS[k]) end
return reply
