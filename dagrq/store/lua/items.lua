-- items.lua: record the results of some items of a mapped node, in one atomic step.
-- Each index counts once (HSETNX on the index, in the results or the errors hash), so a
-- duplicate delivery of an item changes nothing. The call that records the last item ends the
-- mapped node (succeeded, or failed when any item failed) and delivers that outcome to its
-- children, like complete.lua. Cost: O(items recorded) + O(1) per child.
--
-- KEYS[1]   run hash        dagrq:run:{id}          state, pending, failed, ended_at
-- KEYS[2]   nodes hash      dagrq:run:{id}:nodes    <node>:items_total|items_done|items_failed,
--                                                   <node>:state|ended|error
-- KEYS[3]   results hash    dagrq:run:{id}:map:<node>      index -> serialized result
-- KEYS[4]   errors hash     dagrq:run:{id}:maperr:<node>   index -> one-line error
-- KEYS[5]   event stream    dagrq:run:{id}:events          XADD when the node ends
-- then per child, five keys, as in complete.lua (join context, inputs, RQ job, RQ queue, doorbell)
--
-- ARGV[1]  node name
-- ARGV[2]  now, unix seconds
-- ARGV[3]  ttl_s of run keys
-- ARGV[4]  ttl_s of the results
-- ARGV[5]  enqueued_at in RQ's format, for fired children
-- ARGV[6]  number of children n
-- ARGV[7]  number of succeeded items s
-- ARGV[8]  number of failed items f
-- then per child five values, as in complete.lua (name, parents, rule, RQ job id, priority)
-- then s pairs (index, result), then f pairs (index, error)
--
-- Returns {run_state, n_fired, fired..., ended pairs...} as complete.lua does ({run_state, 0}
-- while items are still out), or {'gone'} for no such run.

local R = {run = KEYS[1], nodes = KEYS[2], events = KEYS[5], now = ARGV[2], ttl = ARGV[3]}
local results, errors = KEYS[3], KEYS[4]
local node = ARGV[1]
local n_children, n_ok, n_failed = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])

local run = redis.call('HMGET', R.run, 'state', 'priority', 'dag')
R.dag = run[3]
R.state, R.priority = run[1], tonumber(run[2]) or 0
if not R.state then
  return {'gone'}
end
local children = children_from(5, 8, n_children, ARGV[5])

local current = redis.call('HGET', R.nodes, node .. ':state')
if is_final(current) then -- a late duplicate: finish a cascade a crash may have cut short
  local fired, ended = deliver(R, node, current, nil, true, children)
  return reply_of(R, fired, ended)
end

local base = 8 + 5 * n_children
local new_ok, new_failed = 0, 0
for i = 1, n_ok do
  local index, blob = ARGV[base + 2 * i - 1], ARGV[base + 2 * i]
  if redis.call('HEXISTS', errors, index) == 0 and redis.call('HSETNX', results, index, blob) == 1 then
    new_ok = new_ok + 1
  end
end
base = base + 2 * n_ok
local first_error = nil
for i = 1, n_failed do
  local index, err = ARGV[base + 2 * i - 1], ARGV[base + 2 * i]
  if redis.call('HEXISTS', results, index) == 0 and redis.call('HSETNX', errors, index, err) == 1 then
    new_failed = new_failed + 1
    first_error = first_error or ('item ' .. index .. ': ' .. err)
  end
end
if new_ok > 0 then
  redis.call('EXPIRE', results, ARGV[4])
end
if new_failed > 0 then
  redis.call('EXPIRE', errors, R.ttl)
  redis.call('HINCRBY', R.nodes, node .. ':items_failed', new_failed)
  if not redis.call('HGET', R.nodes, node .. ':first_item_error') then
    redis.call('HSET', R.nodes, node .. ':first_item_error', first_error)
  end
end
if new_ok + new_failed == 0 then
  return {R.state, 0}
end
local done = redis.call('HINCRBY', R.nodes, node .. ':items_done', new_ok + new_failed)
local total = tonumber(redis.call('HGET', R.nodes, node .. ':items_total') or '-1')
redis.call('EXPIRE', R.nodes, R.ttl)
if done < total then
  return {R.state, 0}
end

local failed = tonumber(redis.call('HGET', R.nodes, node .. ':items_failed') or '0')
local outcome, message = 'succeeded', nil
if failed > 0 then
  outcome = 'failed'
  message = failed .. ' of ' .. total .. ' items failed; first: '
    .. redis.call('HGET', R.nodes, node .. ':first_item_error')
  redis.call('HSET', R.nodes, node .. ':error', message)
end
finish(R, node, outcome, message, redis.call('HGET', R.nodes, node .. ':started') or nil)
local fired, ended = deliver(R, node, outcome, nil, false, children)
redis.call('EXPIRE', R.run, R.ttl)
return reply_of(R, fired, ended)
