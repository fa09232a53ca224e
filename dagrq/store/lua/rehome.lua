-- rehome.lua: move one job of a run to the queue of another version of its DAG (`dagrq
-- upgrade`), wherever it waits: its queue list, its queue's intermediate list (a claimer that
-- died), its scheduled registry (a retry's backoff) or its started registry (a lease of a
-- worker that died), keeping scores; its origin follows, so RQ's own retries and registries
-- use the new queue. A job that waits nowhere (deferred, or ended) only gets the new origin.
--
-- KEYS[1]  RQ job hash                      rq:job:<id>            write: origin
-- KEYS[2]  old queue list                   rq:queue:<old>
-- KEYS[3]  old intermediate list            rq:queue:<old>:intermediate
-- KEYS[4]  old scheduled registry           rq:scheduled:<old>
-- KEYS[5]  old started registry             rq:wip:<old>           members '<id>:<execution>'
-- KEYS[6]  new queue list                   rq:queue:<new>
-- KEYS[7]  new scheduled registry           rq:scheduled:<new>
-- KEYS[8]  new started registry             rq:wip:<new>
-- KEYS[9]  new queue's doorbell             dagrq:wake:<new>
-- ARGV[1]  job id
-- ARGV[2]  new queue name (the origin)
--
-- Returns 'gone' (no job hash), 'queued' (now in the new queue), 'scheduled', 'started' or
-- 'origin' (only the origin changed).

-- ring() lives in _lib.lua.

local id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'gone'
end
redis.call('HSET', KEYS[1], 'origin', ARGV[2])
local where = 'origin'
if redis.call('LREM', KEYS[2], 0, id) + redis.call('LREM', KEYS[3], 0, id) > 0 then
  redis.call('RPUSH', KEYS[6], id)
  ring(KEYS[9])
  where = 'queued'
end
local at = redis.call('ZSCORE', KEYS[4], id)
if at then
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZADD', KEYS[7], at, id)
  where = 'scheduled'
end
local prefix = id .. ':'
local started = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
for i = 1, #started, 2 do
  if string.sub(started[i], 1, #prefix) == prefix then
    redis.call('ZREM', KEYS[5], started[i])
    redis.call('ZADD', KEYS[8], started[i + 1], started[i])
    where = 'started'
  end
end
return where
