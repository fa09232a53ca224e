-- settle_run.lua: make a running run's counters agree with its node states, and end it when
-- every node is final (a run whose counters were damaged would otherwise never end); or, with
-- a reason, end it as damaged.
--
-- KEYS[1]  run hash      dagrq:run:{id}         state, pending, failed, ended_at, damaged
-- KEYS[2]  nodes hash    dagrq:run:{id}:nodes   <node>:state (read)
-- KEYS[3]  event stream  dagrq:run:{id}:events  XADD when the run ends
-- ARGV[1]  now, unix seconds
-- ARGV[2]  '' to recount, or the one-line reason the run's state is damaged beyond repair
--
-- A run of a DAG with max_active_runs that ends here lets the next queued one start; a child
-- run wakes its parent's node, a run that succeeded emits its DAG's event (_lib.lua's run_over).
--
-- Returns {run state, pending, failed} after the step, or {'gone'}.

local R = {run = KEYS[1], nodes = KEYS[2], events = KEYS[3], now = ARGV[1]}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'gone'}
end
if state ~= 'running' then
  return {state, -1, -1}
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'ended_at', ARGV[1], 'damaged', ARGV[2])
  event(R, '', 'failed', 'error', 'run state damaged: ' .. ARGV[2])
  run_ended(redis.call('HGET', KEYS[1], 'gate'), ARGV[1])
  run_over(KEYS[1], 'failed', ARGV[1])
  return {'failed', -1, -1}
end
local pending, failed = 0, 0
for _, node in ipairs(cjson.decode(redis.call('HGET', KEYS[1], 'nodes'))) do
  local s = redis.call('HGET', KEYS[2], node .. ':state')
  if not is_final(s) then
    pending = pending + 1
  elseif s == 'failed' then
    failed = failed + 1
  end
end
redis.call('HSET', KEYS[1], 'pending', pending, 'failed', failed)
if pending == 0 then
  state = failed > 0 and 'failed' or 'succeeded'
  redis.call('HSET', KEYS[1], 'state', state, 'ended_at', ARGV[1])
  event(R, '', state)
  run_ended(redis.call('HGET', KEYS[1], 'gate'), ARGV[1])
  run_over(KEYS[1], state, ARGV[1])
end
return {state, pending, failed}
