-- claim.lua: take the first job id waiting on any of a worker's queues, atomically moving it
-- into that queue's RQ intermediate list (`<queue key>:intermediate`). A job id is therefore
-- always in a queue list, an intermediate list or (once RQ starts it) the started registry:
-- a worker that dies between the dequeue and the start leaves its job where the reconciler
-- finds it, never nowhere (RQ's own BLPOP dequeue over several queues has that gap).
--
-- KEYS[1..n]  RQ queue lists, in the worker's order of preference   rq:queue:<name>
-- ARGV        none
--
-- Returns {queue key, job id} for the job claimed, or nil when every queue is empty.
-- Keys touched: one queue list (LMOVE out) and its intermediate list (LMOVE in).

for i = 1, #KEYS do
  local id = redis.call('LMOVE', KEYS[i], KEYS[i] .. ':intermediate', 'LEFT', 'RIGHT')
  if id then
    return {KEYS[i], id}
  end
end
return nil
