-- requeue.lua: a failed attempt will be retried by RQ; show the node as queued again,
-- unless something else (a cancel) has already decided its state.
--
-- KEYS[1]  nodes hash   dagrq:run:{id}:nodes   write: <node>:state|last_error, and the
--                                              attempt's own <node>:err@<n>|tb@<n>
-- KEYS[2]  event stream dagrq:run:{id}:events  XADD the 'queued' entry (with the error)
-- ARGV[1]  node name
-- ARGV[2]  the attempt's one-line error, kept as <node>:last_error and <node>:err@<n>
-- ARGV[3]  now, unix seconds
-- ARGV[4]  the failed attempt's number, or '0' for whichever attempt is current
-- ARGV[5]  the attempt's traceback ('' for none), kept as <node>:tb@<n>
--
-- What the failed attempt held of a limit (<node>:holds) is given back (_lib.lua's release):
-- the retry takes its slots again when it is claimed.
--
-- The retry is counted (dagrq:metrics's <dag>|r|<node>, the attempt's duration), and a run
-- with alert hooks tells its DAG's hook stream (event 'retry', state: the attempt's number).
--
-- Returns 1 when the state was set to queued, 0 when the node was no longer running (or a
-- later attempt has started: a stale attempt changes nothing).

-- event() lives in _lib.lua.

local read = redis.call('HMGET', KEYS[1], ARGV[1] .. ':state', ARGV[1] .. ':attempts',
  ARGV[1] .. ':holds', ARGV[1] .. ':started')
if read[1] ~= 'running' then
  return 0
end
local n = read[2] or '0'
if ARGV[4] ~= '0' and n ~= ARGV[4] then
  return 0
end
release(KEYS[1], ARGV[1], read[3] or nil, ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1] .. ':state', 'queued', ARGV[1] .. ':last_error', ARGV[2],
  ARGV[1] .. ':err@' .. n, ARGV[2])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1] .. ':tb@' .. n, ARGV[5])
end
event({events = KEYS[2], now = ARGV[3]}, ARGV[1], 'queued', 'error', ARGV[2])
local run = redis.call('HMGET', string.sub(KEYS[1], 1, -7), 'dag', 'hooks') -- <run>:nodes
count(run[1], 'r|' .. ARGV[1])
if read[4] then observe(run[1], 'd|' .. ARGV[1], tonumber(ARGV[3]) - tonumber(read[4])) end
if run[1] and run[2] then
  hook(run[1], string.match(KEYS[1], '{(.*)}'), 'retry', n, ARGV[1], ARGV[3])
end
return 1
