-- complete.lua: a node reached its final outcome; record it and deliver one arrival to
-- each child's received-set context, firing or skipping children. One atomic step.
-- Idempotent: a node completed twice (a redelivered job) records nothing new, and each
-- child counts each parent once (HSETNX on the parent's name), so a join fires once.
-- Cost: O(1) per child, whatever the child's fan-in width.
--
-- KEYS[1]   run hash        dagrq:run:{id}        state, pending, failed, ended_at
-- KEYS[2]   nodes hash      dagrq:run:{id}:nodes  <node>:state|ended|error|traceback|queued,
--                                                 and a failed attempt's <node>:err@<n>|tb@<n>
-- KEYS[3]   output string   dagrq:run:{id}:out:<node>      written when the outcome is succeeded
-- KEYS[4]   inputs hash     dagrq:run:{id}:inputs:<node>   this node's fired-with set: deleted
-- KEYS[5]   event stream    dagrq:run:{id}:events          XADD one entry per state change
-- then per child i (i = 1..n), five keys:
-- KEYS[5i+1] join context  dagrq:run:{id}:join:<child>    hash: <parent> -> outcome, #<outcome> -> count
-- KEYS[5i+2] inputs hash   dagrq:run:{id}:inputs:<child>  the context, renamed when it fires
-- KEYS[5i+3] RQ job hash   rq:job:<job id>   pre-created (status deferred) at submit
-- KEYS[5i+4] RQ queue list rq:queue:<queue>
-- KEYS[5i+5] doorbell list dagrq:wake:<queue>   a token per fire (kept to 64): wakes workers
--
-- ARGV[1]  node name
-- ARGV[2]  outcome: succeeded | failed | skipped | upstream_failed | cached (its output kept
--          from an earlier run: ARGV[3] is that output, ARGV[4] that run's id)
-- ARGV[3]  serialized output (used when succeeded)
-- ARGV[4]  one-line error ('' for none), for 'skipped' the reason (a Skip's), for 'cached' the
--          run the output was kept from
-- ARGV[5]  traceback ('' for none)
-- ARGV[6]  now, unix seconds
-- ARGV[7]  ttl_s of run keys
-- ARGV[8]  ttl_s of this node's output
-- ARGV[9]  enqueued_at in RQ's format, for fired children
-- ARGV[10] number of children n
-- ARGV[11] '1' when this node is a join (it has an inputs hash to delete), else '0'
-- ARGV[12] the attempt reporting (start.lua's number), or '0' to skip the check (skips)
-- ARGV[13] for a branch: the children it chose, comma-separated (kept as <node>:chosen; the
--          others receive 'skipped'); '*' for a node that is no branch
-- then per child i, five values: ARGV[13+5i-4] name, ARGV[13+5i-3] number of parents,
--          ARGV[13+5i-2] trigger rule, ARGV[13+5i-1] RQ job id, ARGV[13+5i] its priority
--          (ending in '~' for a node with a delayed start: when it fires, its job hash's
--          dagrq_delay is read and it is parked on a timer in `dagrq:timers` instead of
--          pushed; _lib.lua's park_timer)
--
-- Metrics (docs/observability.md): the node's end state and its attempt's duration are counted
-- in dagrq:metrics (fields <dag>|n|<node>|<state>, <dag>|d|<node>|...), a run that ends in
-- <dag>|run|<state>; a run with hooks or a trace appends its end to dagrq:hooks:<dag>.
--
-- Flow control: what the node's attempt held (<node>:holds) is given back and the limits'
-- waiters let in (see _lib.lua's release); a fired child of a run or node with a priority goes
-- to its queue's priority set; a run with max_active_runs that ends lets the next one start.
--
-- Returns {run_state, n_fired, fired_1..fired_n_fired, then pairs child, end state}:
--   fired    children enqueued by this call (exactly once over all calls);
--   ended    children that ended now, 'skipped' (their rule can no longer be met) or
--            'upstream_failed' (they cannot run because an upstream failed); the caller
--            completes each with that outcome in turn, so the cascade goes on. On a
--            redelivery (the node was already final) every such child is returned again, to
--            finish a cascade a crashed worker left half done.
-- or {'gone'} when the run hash no longer exists, or {'stale'} when a later attempt of the
-- node has started (this attempt's worker was presumed dead): its result is refused.

-- The trigger rules, finish(), deliver() and the child layout live in _lib.lua.

local out_key, inputs_key = KEYS[3], KEYS[4]
local node, outcome = ARGV[1], ARGV[2]
local R = {run = KEYS[1], nodes = KEYS[2], events = KEYS[5], now = ARGV[6], ttl = ARGV[7]}

local run = redis.call('HMGET', R.run, 'state', 'priority', 'dag')
R.state, R.priority, R.dag = run[1], tonumber(run[2]) or 0, run[3]
if not R.state then
  return {'gone'}
end

local read = redis.call('HMGET', R.nodes, node .. ':state', node .. ':attempts', node .. ':chosen',
  node .. ':holds', node .. ':started')
local current = read[1]
local redelivered = is_final(current)
if not redelivered and ARGV[12] ~= '0' and read[2] ~= ARGV[12] then
  return {'stale'}
end
local chosen = ARGV[13] ~= '*' and ARGV[13] or nil
if redelivered then
  outcome = current -- deliver what was recorded, never a second opinion
  chosen = read[3] or nil
else
  if outcome == 'succeeded' or outcome == 'cached' then
    redis.call('SET', out_key, ARGV[3], 'EX', ARGV[8])
    if chosen then
      redis.call('HSET', R.nodes, node .. ':chosen', chosen)
    end
  end
  if ARGV[4] ~= '' and outcome == 'failed' then
    local n = read[2] or '0' -- the attempt that failed keeps its own error too
    redis.call('HSET', R.nodes, node .. ':error', ARGV[4], node .. ':traceback', ARGV[5],
      node .. ':err@' .. n, ARGV[4], node .. ':tb@' .. n, ARGV[5])
  end
  if ARGV[11] == '1' then -- a join: drop the set it fired with
    redis.call('DEL', inputs_key)
  end
  release(R.nodes, node, read[4] or nil, R.now)
  finish(R, node, outcome, ARGV[4] ~= '' and ARGV[4] or nil, read[5] or nil)
end

local children = children_from(5, 13, tonumber(ARGV[10]), ARGV[9])
local fired, ended = deliver(R, node, outcome, chosen, redelivered, children)

redis.call('EXPIRE', R.run, R.ttl)
redis.call('EXPIRE', R.nodes, R.ttl)
return reply_of(R, fired, ended)
