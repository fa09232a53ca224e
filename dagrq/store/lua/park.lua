-- park.lua: a running attempt parks its node: `waiting`, holding no worker, until a timer is
-- due (`dagrq:timers`, moved by any worker's claim), a signal comes or a child run ends
-- (_lib.lua's wake). One atomic step (docs/waits.md).
--
-- KEYS[1]  run hash     dagrq:run:{id}                  read: state, priority
-- KEYS[2]  nodes hash   dagrq:run:{id}:nodes            <node>:state|waiting|wait|parked|
--                                                        parked_ms|parks|due
-- KEYS[3]  event stream dagrq:run:{id}:events           XADD the 'waiting' entry
-- KEYS[4]  timers       dagrq:timers                    ZADD the waiter at its due time
-- KEYS[5]  signals list dagrq:run:{id}:signals:<node>   read: a signal not yet checked
-- ARGV[1]  node name
-- ARGV[2]  the attempt parking (start.lua's number)
-- ARGV[3]  now, unix seconds
-- ARGV[4]  due time, unix ms, or '' for none (woken only by a signal or a child run)
-- ARGV[5]  the reason, shown by status and why ("signal approve (type Approval) since ...")
-- ARGV[6]  the node's wait record (JSON: since, pokes, ...), kept as <node>:wait
-- ARGV[7]  the node's RQ job id
-- ARGV[8]  its RQ queue key
-- ARGV[9]  its queue's doorbell
-- ARGV[10] the node's priority (the run's is added here)
--
-- What the attempt held of a limit (<node>:holds) is given back (a sensor between pokes holds
-- no pool slot). The waiter is kept in <node>:parked (timers key, newline, member) so a cancel
-- (cancel.lua's unqueue) or a wake takes it out of the timers.
--
-- Returns 'parked'; 'again' when news came while the attempt ran (a signal in the list, or a
-- wake noted): the caller looks again instead of parking; 'stale' when the attempt is no
-- longer the node's current one; 'ended' when the run is no longer running.

local node = ARGV[1]
local run = redis.call('HMGET', KEYS[1], 'state', 'priority')
if run[1] ~= 'running' then
  return 'ended'
end
local read = redis.call('HMGET', KEYS[2], node .. ':state', node .. ':attempts', node .. ':holds',
  node .. ':wake')
if read[1] ~= 'running' or read[2] ~= ARGV[2] then
  return 'stale'
end
if read[4] then
  redis.call('HDEL', KEYS[2], node .. ':wake')
  return 'again'
end
if redis.call('LLEN', KEYS[5]) > 0 then
  return 'again'
end
release(KEYS[2], node, read[3] or nil, ARGV[3])
local prio = clamp_priority((tonumber(run[2]) or 0) + (tonumber(ARGV[10]) or 0))
local member = cjson.encode({id = ARGV[7], q = ARGV[8], b = ARGV[9], n = KEYS[2], e = KEYS[3],
  node = node, p = prio})
redis.call('HSET', KEYS[2], node .. ':state', 'waiting', node .. ':waiting', ARGV[5],
  node .. ':wait', ARGV[6], node .. ':parked', KEYS[4] .. '\n' .. member,
  node .. ':parked_ms', now_ms_of())
redis.call('HINCRBY', KEYS[2], node .. ':parks', 1)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], node .. ':due', ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[4], member)
else
  redis.call('HDEL', KEYS[2], node .. ':due')
end
event({events = KEYS[3], now = ARGV[3]}, node, 'waiting', 'reason', ARGV[5])
return 'parked'
