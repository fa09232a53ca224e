-- start.lua: a node job begins an attempt. One atomic step; O(number of data parents).
--
-- KEYS[1]      run hash          dagrq:run:{id}          (read: state, params)
-- KEYS[2]      nodes hash        dagrq:run:{id}:nodes    (write: <node>:state/started/attempts)
-- KEYS[3..n]   output strings    dagrq:run:{id}:out:<p>  (read) one per data parent, in order
-- ARGV[1]      node name
-- ARGV[2]      now, unix seconds (float as text)
-- ARGV[3]      ttl_s of the run's keys
--
-- Returns one of:
--   {"gone"}                      the run does not exist (never submitted, or expired)
--   {"<run state>"}               the run is no longer running (failed, canceled, ...)
--   {"done", "<node state>"}      the node is already final: redelivered, do not run it again
--   {"run", attempt, params_json, out_1, ..., out_k}   run it; a missing output is nil
--
-- Keys touched: KEYS[2] written (HSET, HINCRBY, EXPIRE); KEYS[1], KEYS[3..] read only.

local run_state = redis.call('HGET', KEYS[1], 'state')
if not run_state then
  return {'gone'}
end
if run_state ~= 'running' then
  return {run_state}
end

local node = ARGV[1]
local state = redis.call('HGET', KEYS[2], node .. ':state')
if state == 'succeeded' or state == 'failed' or state == 'skipped' or state == 'canceled' then
  return {'done', state}
end

redis.call('HSET', KEYS[2], node .. ':state', 'running', node .. ':started', ARGV[2])
local attempt = redis.call('HINCRBY', KEYS[2], node .. ':attempts', 1)
redis.call('EXPIRE', KEYS[2], ARGV[3])

local reply = {'run', attempt, redis.call('HGET', KEYS[1], 'params')}
for i = 3, #KEYS do
  reply[#reply + 1] = redis.call('GET', KEYS[i])
end
return reply
