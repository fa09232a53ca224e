-- free_run.lua: the reconciler takes out of its DAG's active set a run that is no longer
-- running (it expired, or ended by a path that did not say so), and starts the next queued
-- runs (_lib.lua's run_ended). Fenced: a run still running keeps its place.
--
-- KEYS[1]  run hash     dagrq:run:{id}          state (read)
-- ARGV[1]  the active set's key, ARGV[2] the DAG's max_active_runs, ARGV[3] the run id,
-- ARGV[4]  now, unix seconds
--
-- Returns 1 when the run was taken out, else 0.

if redis.call('HGET', KEYS[1], 'state') == 'running' then
  return 0
end
run_ended(cjson.encode({k = ARGV[1], max = tonumber(ARGV[2]), id = ARGV[3]}), ARGV[4])
return 1
