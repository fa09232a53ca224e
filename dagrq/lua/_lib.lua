-- _lib.lua: shared local functions, prepended to every script when it is loaded
-- (dagrq/scripts.py), so the trigger rules, the event writer and the arrival step exist once.
-- It touches only the keys its callers pass in (documented in their headers).

local function is_final(state)
  return state == 'succeeded' or state == 'failed' or state == 'skipped' or state == 'canceled'
end

-- The trigger rules; mirrors dagrq/rules.py (tests/test_join.py keeps them equal).
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

-- A node reached a final state: count it down; the last one ends the run.
local function finish(R, name, state, err)
  redis.call('HSET', R.nodes, name .. ':state', state, name .. ':ended', R.now)
  event(R, name, state, 'error', err)
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

-- Deliver `parent`'s `outcome` to each child's received-set context.
-- children[i] = {name, total, rule, job_id, ctx, inputs, job_key, queue_key, bell, enqueued_at}
-- Returns fired (children enqueued now) and skipped (children skipped now, or, on a
-- redelivery, already skipped: the caller cascades those).
local function deliver(R, parent, outcome, redelivered, children)
  local fired, skipped = {}, {}
  for _, c in ipairs(children) do
    local child_state = redis.call('HGET', R.nodes, c.name .. ':state')
    if child_state == 'pending' then
      local decision
      if c.total == 1 then
        local s = outcome == 'succeeded' and 1 or 0
        local f = outcome == 'failed' and 1 or 0
        decision = decide(c.rule, 1, s, f, 1 - s - f)
      elseif redis.call('HSETNX', c.ctx, parent, outcome) == 1 then
        redis.call('HINCRBY', c.ctx, '#' .. outcome, 1)
        local n = redis.call('HMGET', c.ctx, '#succeeded', '#failed', '#skipped')
        decision = decide(c.rule, c.total, tonumber(n[1] or 0), tonumber(n[2] or 0),
                          tonumber(n[3] or 0))
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
        end
        redis.call('HSET', R.nodes, c.name .. ':state', 'queued', c.name .. ':queued', R.now)
        event(R, c.name, 'queued')
        redis.call('HSET', c.job_key, 'status', 'queued', 'enqueued_at', c.enqueued_at)
        redis.call('RPUSH', c.queue_key, c.job_id)
        ring(c.bell)
        fired[#fired + 1] = c.name
      elseif decision == 'skip' then
        redis.call('DEL', c.ctx, c.job_key)
        finish(R, c.name, 'skipped')
        skipped[#skipped + 1] = c.name
      end
    elseif child_state == 'skipped' and redelivered then
      skipped[#skipped + 1] = c.name
    end
  end
  return fired, skipped
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

local function reply_of(R, fired, skipped)
  local reply = {R.state, #fired}
  for _, c in ipairs(fired) do reply[#reply + 1] = c end
  for _, c in ipairs(skipped) do reply[#reply + 1] = c end
  return reply
end
