-- claim.lua: take the first job id waiting on any of a worker's queues, atomically moving it
-- into that queue's RQ intermediate list (`<queue key>:intermediate`). A job id is therefore
-- always in a queue list, an intermediate list or (once RQ starts it) the started registry:
-- a worker that dies between the dequeue and the start leaves its job where the reconciler
-- finds it, never nowhere (RQ's own BLPOP dequeue over several queues has that gap).
--
-- KEYS[1..n]  RQ queue lists, in the worker's order of preference   rq:queue:<name>
-- ARGV[1]     RQ's job hash prefix, 'rq:job:'
--
-- Returns {queue key, job id, field, value, ...}: the job claimed and its RQ job hash (read
-- in the same step, saving the worker a round trip; empty when the hash is gone), or nil when
-- every queue is empty.
-- Keys touched: one queue list (LMOVE out), its intermediate list (LMOVE in), and the claimed
-- job's hash (read; its name is made from the id, so this script needs a Redis that is not a
-- cluster, as all of dagrq does).

for i = 1, #KEYS do
  local id = redis.call('LMOVE', KEYS[i], KEYS[i] .. ':intermediate', 'LEFT', 'RIGHT')
  if id then
    local reply = {KEYS[i], id}
    local fields = redis.call('HGETALL', ARGV[1] .. id)
    for j = 1, #fields do
      reply[j + 2] = fields[j]
    end
    return reply
  end
end
return nil
