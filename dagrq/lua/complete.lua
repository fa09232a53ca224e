-- complete.lua: a node reached its final outcome; record it and deliver one arrival to
-- each child's received-set context, firing or skipping children. One atomic step.
-- Idempotent: a node completed twice (a redelivered job) records nothing new, and each
-- child counts each parent once (HSETNX on the parent's name), so a join fires once.
-- Cost: O(1) per child, whatever the child's fan-in width.
--
-- KEYS[1]   run hash        dagrq:run:{id}        state, pending, failed, ended_at
-- KEYS[2]   nodes hash      dagrq:run:{id}:nodes  <node>:state|ended|error|traceback|queued
-- KEYS[3]   output string   dagrq:run:{id}:out:<node>      written when the outcome is succeeded
-- KEYS[4]   inputs hash     dagrq:run:{id}:inputs:<node>   this node's fired-with set: deleted
-- then per child i (i = 1..n), four keys:
-- KEYS[4i+1] join context  dagrq:run:{id}:join:<child>    hash: <parent> -> outcome, #<outcome> -> count
-- KEYS[4i+2] inputs hash   dagrq:run:{id}:inputs:<child>  the context, renamed when it fires
-- KEYS[4i+3] RQ job hash   rq:job:<job id>   pre-created (status deferred) at submit
-- KEYS[4i+4] RQ queue list rq:queue:<queue>
--
-- ARGV[1]  node name
-- ARGV[2]  outcome: succeeded | failed | skipped
-- ARGV[3]  serialized output (used when succeeded)
-- ARGV[4]  one-line error ('' for none)
-- ARGV[5]  traceback ('' for none)
-- ARGV[6]  now, unix seconds
-- ARGV[7]  ttl_s of run keys
-- ARGV[8]  ttl_s of this node's output
-- ARGV[9]  enqueued_at in RQ's format, for fired children
-- ARGV[10] number of children n
-- ARGV[11] '1' when this node is a join (it has an inputs hash to delete), else '0'
-- then per child i, four values: ARGV[11+4i-3] name, ARGV[11+4i-2] number of parents,
--          ARGV[11+4i-1] trigger rule, ARGV[11+4i] RQ job id
--
-- Returns {run_state, n_fired, fired_1..fired_n_fired, skipped_1, ...}:
--   fired    children enqueued by this call (exactly once over all calls);
--   skipped  children whose rule can no longer be met, now skipped; the caller completes
--            them as 'skipped' in turn, so skips cascade. On a redelivery (the node was
--            already final) every skipped child is returned again, to finish a cascade a
--            crashed worker left half done.
-- or {'gone'} when the run hash no longer exists.

local run_key, nodes_key, out_key, inputs_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, outcome = ARGV[1], ARGV[2]
local now, ttl = ARGV[6], ARGV[7]

local run_state = redis.call('HGET', run_key, 'state')
if not run_state then
  return {'gone'}
end

local function final(state)
  return state == 'succeeded' or state == 'failed' or state == 'skipped' or state == 'canceled'
end

-- A node reached a final state: count it down; the last one ends the run.
local function finish(name, state)
  redis.call('HSET', nodes_key, name .. ':state', state, name .. ':ended', now)
  if state == 'failed' then
    redis.call('HINCRBY', run_key, 'failed', 1)
  end
  local left = redis.call('HINCRBY', run_key, 'pending', -1)
  if left <= 0 and run_state == 'running' then
    local failed = tonumber(redis.call('HGET', run_key, 'failed') or '0')
    run_state = failed > 0 and 'failed' or 'succeeded'
    redis.call('HSET', run_key, 'state', run_state, 'ended_at', now)
  end
end

-- The trigger rules; mirrors dagrq/rules.py (tests/test_rules.py keeps them equal).
local function decide(rule, total, s, f, k)
  local arrived = s + f + k
  local done = arrived >= total
  if rule == 'all_success' then
    if s == total then return 'fire' elseif f + k > 0 then return 'skip' end
  elseif rule == 'all_done' then
    if done then return 'fire' end
  elseif rule == 'all_failed' then
    if f == total then return 'fire' elseif s + k > 0 then return 'skip' end
  elseif rule == 'one_success' then
    if s > 0 then return 'fire' elseif done then return 'skip' end
  elseif rule == 'one_failed' then
    if f > 0 then return 'fire' elseif done then return 'skip' end
  elseif rule == 'none_failed' then
    if f > 0 then return 'skip' elseif done then return 'fire' end
  else
    local q = tonumber(string.match(rule, '^quorum:(%d+)$'))
    if s >= q then return 'fire' elseif s + (total - arrived) < q then return 'skip' end
  end
  return 'wait'
end

local current = redis.call('HGET', nodes_key, node .. ':state')
local redelivered = final(current)
if redelivered then
  outcome = current -- deliver what was recorded, never a second opinion
else
  if outcome == 'succeeded' then
    redis.call('SET', out_key, ARGV[3], 'EX', ARGV[8])
  end
  if ARGV[4] ~= '' then
    redis.call('HSET', nodes_key, node .. ':error', ARGV[4], node .. ':traceback', ARGV[5])
  end
  if ARGV[11] == '1' then -- a join: drop the set it fired with
    redis.call('DEL', inputs_key)
  end
  finish(node, outcome)
end

local fired, skipped = {}, {}
local n = tonumber(ARGV[10])
for i = 1, n do
  local child = ARGV[11 + 4 * i - 3]
  local total = tonumber(ARGV[11 + 4 * i - 2])
  local rule = ARGV[11 + 4 * i - 1]
  local job_id = ARGV[11 + 4 * i]
  local ctx, inputs = KEYS[4 * i + 1], KEYS[4 * i + 2]
  local job_key, queue_key = KEYS[4 * i + 3], KEYS[4 * i + 4]
  local child_state = redis.call('HGET', nodes_key, child .. ':state')
  if child_state == 'pending' then
    local decision
    if total == 1 then
      local s = outcome == 'succeeded' and 1 or 0
      local f = outcome == 'failed' and 1 or 0
      decision = decide(rule, 1, s, f, 1 - s - f)
    elseif redis.call('HSETNX', ctx, node, outcome) == 1 then
      redis.call('HINCRBY', ctx, '#' .. outcome, 1)
      local c = redis.call('HMGET', ctx, '#succeeded', '#failed', '#skipped')
      decision = decide(rule, total, tonumber(c[1] or 0), tonumber(c[2] or 0), tonumber(c[3] or 0))
      if decision == 'wait' then
        redis.call('EXPIRE', ctx, ttl)
      end
    else
      decision = 'duplicate'
    end
    if decision == 'fire' then
      if total > 1 then -- keep what it fired with: start.lua reads only those parents
        redis.call('RENAME', ctx, inputs)
        redis.call('EXPIRE', inputs, ttl)
      end
      redis.call('HSET', nodes_key, child .. ':state', 'queued', child .. ':queued', now)
      redis.call('HSET', job_key, 'status', 'queued', 'enqueued_at', ARGV[9])
      redis.call('RPUSH', queue_key, job_id)
      fired[#fired + 1] = child
    elseif decision == 'skip' then
      redis.call('DEL', ctx, job_key)
      finish(child, 'skipped')
      skipped[#skipped + 1] = child
    end
  elseif child_state == 'skipped' and redelivered then
    skipped[#skipped + 1] = child
  end
end

redis.call('EXPIRE', run_key, ttl)
redis.call('EXPIRE', nodes_key, ttl)

local reply = {run_state, #fired}
for _, c in ipairs(fired) do reply[#reply + 1] = c end
for _, c in ipairs(skipped) do reply[#reply + 1] = c end
return reply
