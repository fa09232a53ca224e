-- _lib.lua: shared local functions, prepended to every script when it is loaded
-- (dagrq/scripts.py), so the trigger rules, the event writer and the arrival step exist once.
-- It touches only the keys its callers pass in (documented in their headers).

local function is_final(state)
  return state == 'succeeded' or state == 'failed' or state == 'skipped'
    or state == 'upstream_failed' or state == 'canceled'
end

-- The trigger rules, with Airflow's meaning; mirrors dagrq/rules.py (tests/test_join.py keeps
-- them equal). s, f, k, u: parents arrived succeeded, failed, skipped, upstream_failed.
-- Returns 'fire', 'skip', 'upstream_failed' or 'wait'.
local function decide(rule, total, s, f, k, u)
  local done = s + f + k + u >= total
  if rule == 'all_success' then
    if f + u > 0 then return 'upstream_failed' elseif k > 0 then return 'skip'
    elseif done then return 'fire' end
  elseif rule == 'all_done' then
    if done then return 'fire' end
  elseif rule == 'all_failed' then
    if s + k > 0 then return 'skip' elseif done then return 'fire' end
  elseif rule == 'one_success' then
    if s > 0 then return 'fire'
    elseif done then if k == total then return 'skip' else return 'upstream_failed' end end
  elseif rule == 'one_failed' then
    if f + u > 0 then return 'fire' elseif done then return 'skip' end
  elseif rule == 'one_done' then
    if s + f > 0 then return 'fire' elseif done then return 'skip' end
  elseif rule == 'none_failed' then
    if f + u > 0 then return 'upstream_failed' elseif done then return 'fire' end
  elseif rule == 'none_failed_min_one_success' then
    if f + u > 0 then return 'upstream_failed' elseif k == total then return 'skip'
    elseif done then return 'fire' end
  elseif rule == 'none_skipped' then
    if k > 0 then return 'skip' elseif done then return 'fire' end
  elseif rule == 'all_skipped' then
    if s + f + u > 0 then return 'skip' elseif done then return 'fire' end
  elseif rule == 'all_done_min_one_success' then
    if k > 0 then return 'skip'
    elseif done then if s > 0 then return 'fire' else return 'upstream_failed' end end
  elseif rule == 'always' then
    return 'fire'
  else
    local q = tonumber(string.match(rule, '^quorum:(%d+)$'))
    if s >= q then return 'fire'
    elseif s + (total - s - f - k - u) < q then
      if f + u > 0 then return 'upstream_failed' else return 'skip' end
    end
  end
  return 'wait'
end

-- R = {run = run hash key, nodes = nodes hash key, events = the run's event stream key,
--      now = text, ttl = text, state = run state}

-- Events kept per run (approximately: MAXLEN ~), so a stream stays bounded.
local EVENTS_MAX = 10000

-- Append one state change to the run's event stream (bounded; its TTL was set at submit).
-- `field`, `value`: one optional extra field ('error' with the error, 'attempt' with its number).
local function event(R, name, state, field, value)
  if field and value then
    redis.call('XADD', R.events, 'MAXLEN', '~', EVENTS_MAX, '*', 'node', name, 'state', state,
               'ts', R.now, field, value)
  else
    redis.call('XADD', R.events, 'MAXLEN', '~', EVENTS_MAX, '*', 'node', name, 'state', state,
               'ts', R.now)
  end
end

-- Wake workers blocked on a queue's doorbell list (see keys.doorbell_key); the list is kept
-- short: a token only says "look again".
local function ring(bell)
  redis.call('RPUSH', bell, 1)
  redis.call('LTRIM', bell, -64, -1)
end

-- A node reached a final state: count it down; the last one ends the run. `why` is its error
-- (failed) or the reason it was skipped (a Skip, say), or nil.
local function finish(R, name, state, why)
  redis.call('HSET', R.nodes, name .. ':state', state, name .. ':ended', R.now)
  if why and state == 'skipped' then
    redis.call('HSET', R.nodes, name .. ':reason', why)
    event(R, name, state, 'reason', why)
  else
    event(R, name, state, 'error', why)
  end
  if state == 'failed' then
    redis.call('HINCRBY', R.run, 'failed', 1)
  end
  local left = redis.call('HINCRBY', R.run, 'pending', -1)
  if left <= 0 and R.state == 'running' then
    local failed = tonumber(redis.call('HGET', R.run, 'failed') or '0')
    R.state = failed > 0 and 'failed' or 'succeeded'
    redis.call('HSET', R.run, 'state', R.state, 'ended_at', R.now)
    event(R, '', R.state)
  end
end

-- The arrival a child receives from `parent`: its outcome, except that a branch that
-- succeeded sends 'unchosen' to the children it does not follow (`chosen` is the comma-joined
-- list it follows: those it chose and the children downstream of them, or nil for a node
-- that is no branch). An unchosen child is skipped outright, whatever its trigger rule, as
-- Airflow's skip_all_except does.
local function arrival(outcome, chosen, child)
  if chosen and outcome == 'succeeded'
      and not string.find(',' .. chosen .. ',', ',' .. child .. ',', 1, true) then
    return 'unchosen'
  end
  return outcome
end

-- Deliver `parent`'s `outcome` to each child's received-set context.
-- children[i] = {name, total, rule, job_id, ctx, inputs, job_key, queue_key, bell, enqueued_at}
-- Returns fired (children enqueued now) and ended: pairs {child, 'skipped'|'upstream_failed'}
-- of children that ended now or, on a redelivery, had ended so (the caller cascades those).
local function deliver(R, parent, outcome, chosen, redelivered, children)
  local fired, ended = {}, {}
  for _, c in ipairs(children) do
    local child_state = redis.call('HGET', R.nodes, c.name .. ':state')
    local got = arrival(outcome, chosen, c.name)
    if child_state == 'pending' then
      local decision
      if got == 'unchosen' then
        decision = 'skip'
      elseif c.total == 1 then
        decision = decide(c.rule, 1, got == 'succeeded' and 1 or 0, got == 'failed' and 1 or 0,
                          got == 'skipped' and 1 or 0, got == 'upstream_failed' and 1 or 0)
      elseif redis.call('HSETNX', c.ctx, parent, got) == 1 then
        redis.call('HINCRBY', c.ctx, '#' .. got, 1)
        local n = redis.call('HMGET', c.ctx, '#succeeded', '#failed', '#skipped',
                             '#upstream_failed')
        decision = decide(c.rule, c.total, tonumber(n[1] or 0), tonumber(n[2] or 0),
                          tonumber(n[3] or 0), tonumber(n[4] or 0))
        if decision == 'wait' then
          redis.call('EXPIRE', c.ctx, R.ttl)
        end
      else
        decision = 'duplicate'
      end
      if decision == 'fire' then
        if c.total > 1 then -- keep what it fired with: start.lua reads only those parents
          redis.call('RENAME', c.ctx, c.inputs)
          redis.call('EXPIRE', c.inputs, R.ttl)
        elseif got ~= 'succeeded' then -- fired by a failure or a skip: it reads no parent
          redis.call('HSET', c.inputs, parent, got)
          redis.call('EXPIRE', c.inputs, R.ttl)
        end
        redis.call('HSET', R.nodes, c.name .. ':state', 'queued', c.name .. ':queued', R.now)
        event(R, c.name, 'queued')
        redis.call('HSET', c.job_key, 'status', 'queued', 'enqueued_at', c.enqueued_at)
        redis.call('RPUSH', c.queue_key, c.job_id)
        ring(c.bell)
        fired[#fired + 1] = c.name
      elseif decision == 'skip' or decision == 'upstream_failed' then
        local state = decision == 'skip' and 'skipped' or 'upstream_failed'
        redis.call('DEL', c.ctx, c.job_key)
        finish(R, c.name, state)
        ended[#ended + 1] = {c.name, state}
      end
    elseif redelivered and (child_state == 'skipped' or child_state == 'upstream_failed') then
      ended[#ended + 1] = {c.name, child_state}
    end
  end
  return fired, ended
end

-- Children laid out by the callers: five KEYS from `key0 + 1` and four ARGV from `arg0 + 1`
-- per child (see complete.lua's header).
local function children_from(key0, arg0, n, enqueued_at)
  local out = {}
  for i = 1, n do
    local k, a = key0 + 5 * (i - 1), arg0 + 4 * (i - 1)
    out[i] = {
      name = ARGV[a + 1], total = tonumber(ARGV[a + 2]), rule = ARGV[a + 3], job_id = ARGV[a + 4],
      ctx = KEYS[k + 1], inputs = KEYS[k + 2], job_key = KEYS[k + 3], queue_key = KEYS[k + 4],
      bell = KEYS[k + 5], enqueued_at = enqueued_at,
    }
  end
  return out
end

-- {run state, n fired, fired..., then (child, its end state) pairs}
local function reply_of(R, fired, ended)
  local reply = {R.state, #fired}
  for _, c in ipairs(fired) do reply[#reply + 1] = c end
  for _, e in ipairs(ended) do reply[#reply + 1] = e[1]; reply[#reply + 1] = e[2] end
  return reply
end
