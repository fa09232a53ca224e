-- admit.lua: a new run's roots start, or (the DAG's max_active_runs reached) the run waits
-- `queued` in its DAG's line. Called in the MULTI/EXEC that writes the run, for a run whose
-- roots are not on their queues yet: one of a DAG with max_active_runs, or with a priority.
--
-- KEYS[1]  run hash     dagrq:run:{id}          state, started_at, queued_as; reads 'roots'
-- KEYS[2]  nodes hash   dagrq:run:{id}:nodes    <root>:state|queued
-- KEYS[3]  event stream dagrq:run:{id}:events   XADD the run's and its roots' entries
-- KEYS[4]  active set   dagrq:flow:runs:<dag>   the DAG's running runs (with max_active_runs)
-- ARGV[1]  run id
-- ARGV[2]  now, unix seconds
-- ARGV[3]  max_active_runs, or '0' for no limit
-- ARGV[4]  the run's priority
--
-- The run hash's 'roots' field lists the roots' jobs: [[job id, queue key, doorbell, node,
-- priority], ...] (_lib.lua's start_run pushes them). A queued run waits in the sorted set
-- `<active set>:queue` (higher priority first, then first come); the member, kept in the run
-- hash as 'queued_as', says where its keys are. When a run of the DAG ends, _lib.lua's
-- run_ended starts the next ones.
--
-- The active set is listed in `dagrq:flow:runsets` (key -> max) for the reconciler's sweep.
--
-- Returns 'running' or 'queued'.

local q = {id = ARGV[1], r = KEYS[1], n = KEYS[2], e = KEYS[3]}
local max = tonumber(ARGV[3])
if max > 0 then
  redis.call('HSET', FLOW .. 'runsets', KEYS[4], max)
end
if max > 0 and redis.call('SCARD', KEYS[4]) >= max then
  local member = cjson.encode(q)
  redis.call('ZADD', KEYS[4] .. ':queue', prio_score(ARGV[4]), member)
  redis.call('HSET', KEYS[1], 'queued_as', member)
  event({events = KEYS[3], now = ARGV[2]}, '', 'queued', 'reason',
    'max_active_runs ' .. max .. ' reached')
  return 'queued'
end
if max > 0 then
  redis.call('SADD', KEYS[4], ARGV[1])
end
start_run(q, ARGV[2])
return 'running'
