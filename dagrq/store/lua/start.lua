-- start.lua: a node job begins an attempt. One atomic step; O(number of data parents).
--
-- KEYS[1]      run hash          dagrq:run:{id}            read: state, params, plan
-- KEYS[2]      nodes hash        dagrq:run:{id}:nodes      write: <node>:state|started|attempts|worker
-- KEYS[3]      inputs hash       dagrq:run:{id}:inputs:<node>   read: the received-set the
--                                node fired with (absent for a node with one parent or none)
-- KEYS[4]      event stream      dagrq:run:{id}:events     XADD the 'running' entry
-- KEYS[5..n]   output strings    dagrq:run:{id}:out:<p>    read, one per data parent
-- ARGV[1]      node name
-- ARGV[2]      now, unix seconds
-- ARGV[3]      ttl_s of the run's keys
-- ARGV[4]      the DAG version (plan hash) of the worker's code
-- ARGV[5]      where the attempt runs: "<host>:<pid>"
-- ARGV[6..n]   the data parents' names, in the order of KEYS[5..n]
--
-- A data parent's output is read only if the parent had succeeded when the node fired (the
-- inputs hash says so), so a node fired early by one_success or quorum sees the same inputs
-- whenever it starts; a parent that failed, was skipped or had not arrived reads as nil.
--
-- Returns one of:
--   {"gone"}                      the run does not exist (never submitted, or expired)
--   {"<run state>"}               the run is no longer running (failed, canceled, ...)
--   {"done", "<node state>"}      the node is already final: a redelivery, do not run it
--   {"refused", "<node state>"}   the node is not queued (nor running, as a re-run after a
--                                 lost worker is): nothing fired it, so nothing starts
--   {"other_version", plan}       the run is pinned to another version of the DAG: this
--                                 worker's code must not run it (nothing changes)
--   {"run", attempt, params_json, refresh, wait, queued, out_1, ..., out_k}   run it; nil for
--                                 no output; refresh: the nodes whose cache the run ignores
--                                 ('*': all); wait: a waiting node's record (<node>:wait, JSON:
--                                 since, pokes; '' before its first park); queued: when the
--                                 node was last put on its queue (a delayed start counts from it)
--
-- A node that will not run (final, or its run ended) gives back what its claim took of a limit
-- (<node>:holds; _lib.lua's release).
--
-- Metrics (_lib.lua's count, observe): an attempt started, and the first attempt's queue wait.
--
-- Keys touched: KEYS[2] written (HSET, HINCRBY, EXPIRE), KEYS[4] appended, the DAG's
-- counters (dagrq:metrics:<dag>); others read only.

-- is_final() and event() live in _lib.lua.

local run_state = redis.call('HGET', KEYS[1], 'state')
if not run_state then
  return {'gone'}
end
if run_state ~= 'running' then
  release(KEYS[2], ARGV[1], redis.call('HGET', KEYS[2], ARGV[1] .. ':holds') or nil, ARGV[2])
  return {run_state}
end

local node = ARGV[1]
local read = redis.call('HMGET', KEYS[2], node .. ':state', node .. ':holds', node .. ':wait',
  node .. ':queued')
local state = read[1]
if is_final(state) then
  release(KEYS[2], node, read[2] or nil, ARGV[2])
  return {'done', state}
end
if state ~= 'queued' and state ~= 'running' then
  return {'refused', state or 'unknown'} -- pending: its job was pushed by something else
end

local meta = redis.call('HMGET', KEYS[1], 'params', 'plan', 'refresh', 'dag')
if meta[2] ~= ARGV[4] then
  return {'other_version', meta[2] or ''}
end

redis.call('HSET', KEYS[2], node .. ':state', 'running', node .. ':started', ARGV[2],
  node .. ':worker', ARGV[5])
local attempt = redis.call('HINCRBY', KEYS[2], node .. ':attempts', 1)
redis.call('EXPIRE', KEYS[2], ARGV[3])
event({events = KEYS[4], now = ARGV[2]}, node, 'running', 'attempt', attempt)
count(meta[4], 's|' .. node)
if attempt == 1 and read[4] then -- queue wait: from being put on its queue to this start
  observe(meta[4], 'w|' .. node, tonumber(ARGV[2]) - tonumber(read[4]))
end

local reply = {'run', attempt, meta[1], meta[3] or '', read[3] or '', read[4] or ''}
local fired_with = redis.call('EXISTS', KEYS[3]) == 1
for i = 5, #KEYS do -- the outputs follow the six fields above
  local wanted = true
  if fired_with then
    wanted = redis.call('HGET', KEYS[3], ARGV[i + 1]) == 'succeeded'
  end
  if wanted then
    reply[#reply + 1] = redis.call('GET', KEYS[i])
  else
    reply[#reply + 1] = false
  end
end
return reply
