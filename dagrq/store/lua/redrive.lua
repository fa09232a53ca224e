-- redrive.lua: put back on its queue a job that a node needs but that sits in no queue.
-- Used by the reconciler for a job that was lost (its claimer died before starting it, a
-- failover lost the push, someone deleted it) and is found in no list it could wait in.
--
-- KEYS[1]  RQ queue list          rq:queue:<name>
-- KEYS[2]  RQ intermediate list   rq:queue:<name>:intermediate
-- KEYS[3]  RQ job hash            rq:job:<job id>                  status set to queued
-- KEYS[4]  doorbell list          dagrq:wake:<name>                a token (kept to 64)
-- KEYS[5]  nodes hash             dagrq:run:{id}:nodes             <node>:state, <node>:redriven
-- ARGV[1]  job id
-- ARGV[2]  '1': also take the job back from the intermediate list (its claimer is presumed
--          dead), '0': a job in the intermediate list is left to its claimer
-- ARGV[3]  node name
-- ARGV[4]  the node states in which the job is still wanted, comma-separated
--
-- Returns 'waiting' (the job is in its queue or its priority set: nothing to do), 'claimed' (in the intermediate
-- list and ARGV[2] is '0'), 'unwanted' (the node moved on meanwhile), 'gone' (no job hash),
-- or 'pushed' (it was put back at the head of its queue; the node's redriven count grows, and
-- dagrq:metrics's redrives).

local job_id = ARGV[1]
local state = redis.call('HGET', KEYS[5], ARGV[3] .. ':state')
if not state or not string.find(',' .. ARGV[4] .. ',', ',' .. state .. ',', 1, true) then
  return 'unwanted'
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return 'gone'
end
if redis.call('LPOS', KEYS[1], job_id) or redis.call('ZSCORE', KEYS[1] .. ':prio', job_id) then
  return 'waiting' -- in its queue, or in the queue's priority set
end
if redis.call('LPOS', KEYS[2], job_id) then
  if ARGV[2] ~= '1' then
    return 'claimed'
  end
  redis.call('LREM', KEYS[2], 0, job_id)
end
redis.call('HSET', KEYS[3], 'status', 'queued')
redis.call('LPUSH', KEYS[1], job_id)
ring(KEYS[4])
redis.call('HINCRBY', KEYS[5], ARGV[3] .. ':redriven', 1)
redis.call('HINCRBY', METRICS, '*|redrives', 1)
return 'pushed'
