-- _lib.lua: shared local functions, prepended to every script when it is loaded
-- (dagrq/scripts.py), so the trigger rules, the event writer and the arrival step exist once.
-- It touches only the keys its callers pass in (documented in their headers).

local function is_final(state)
  return state == 'succeeded' or state == 'failed' or state == 'skipped'
    or state == 'upstream_failed' or state == 'canceled' or state == 'cached'
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
--      now = text, ttl = text, state = run state, dag = the DAG's name (its counters)}

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

-- ---------------------------------------------------------------- metrics
-- (docs/observability.md; dagrq/store/metrics.py reads them)

-- dagrq.store.keys.METRICS_KEY, HOOKS_PREFIX, HOOKS_MAX, TRACING_KEY
local METRICS = 'dagrq:metrics'
local TRACING = 'dagrq:tracing'
local HOOKS = 'dagrq:hooks:'
local HOOKS_MAX = 10000
-- dagrq.model.observe.BUCKETS: the histograms' upper bounds, seconds (tests/test_observe.py
-- keeps them equal); a value above the last counts in bucket #BUCKETS + 1 (+Inf)
local BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
  3600}

-- Count one more of DAG `dag`'s `field` (field `<dag>|<field>` of the one counters hash, kept
-- forever: a count survives restarts).
local function count(dag, field)
  if dag then redis.call('HINCRBY', METRICS, dag .. '|' .. field, 1) end
end

-- Observe `seconds` in DAG `dag`'s histogram `prefix` ('d|<node>' durations, 'w|<node>' queue
-- waits): one bucket (not cumulative: the exporter sums them) and the sum, in whole
-- microseconds (HINCRBY: HINCRBYFLOAT costs several times more inside a script).
local function observe(dag, prefix, seconds)
  if not dag or not seconds or seconds < 0 then return end
  local i = #BUCKETS + 1
  for j, le in ipairs(BUCKETS) do
    if seconds <= le then i = j; break end
  end
  redis.call('HINCRBY', METRICS, dag .. '|' .. prefix .. '|' .. i, 1)
  redis.call('HINCRBY', METRICS, dag .. '|' .. prefix .. '|us', math.floor(seconds * 1e6 + 0.5))
end

-- A run with alert hooks or a trace ('hooks' or 'trace' in its hash), or any run while a
-- worker traces (TRACING exists), has news for its DAG's hook stream, read by the workers
-- (dagrq/workers/hooks.py: callbacks, webhooks, run spans), never acted on here.
local function hook(dag, run_id, name, state, node, now)
  redis.call('XADD', HOOKS .. dag, 'MAXLEN', '~', HOOKS_MAX, '*', 'run', run_id, 'event', name,
    'state', state, 'node', node or '', 'ts', now)
end

-- Wake workers blocked on a queue's doorbell list (see keys.doorbell_key); the list is kept
-- short: a token only says "look again".
local function ring(bell)
  redis.call('RPUSH', bell, 1)
  redis.call('LTRIM', bell, -64, -1)
end

-- ---------------------------------------------------------------- flow control
-- (docs/flow-control.md; the keys' layout is dagrq/store/flow.py's docstring)

-- dagrq.store.keys.FLOW_PREFIX (tests/test_flow.py keeps them equal)
local FLOW = 'dagrq:flow:'
-- dagrq.model.flow.DEFAULT_POOL_SIZE
local DEFAULT_POOL_SIZE = 128
-- priorities sort above a 40-bit sequence number in one score: FIFO among equals
local PRIO_SHIFT = 1099511627776

-- dagrq.model.flow.PRIORITY_MAX
local PRIORITY_MAX = 1000

local function clamp_priority(p)
  return math.max(-PRIORITY_MAX, math.min(PRIORITY_MAX, p))
end

-- A score for a sorted set of waiting work: higher priority first, then first come.
local function prio_score(prio)
  return -(tonumber(prio) or 0) * PRIO_SHIFT + redis.call('INCR', FLOW .. 'seq')
end

-- Put job `id` on its queue: a job of priority 0 at the list's tail (RQ's own queue), any
-- other in the queue's priority set (`<queue key>:prio`, which claim.lua reads first for
-- priorities above 0, after the list for those below); ring the doorbell.
local function push(id, queue_key, bell, prio)
  prio = tonumber(prio) or 0
  if prio ~= 0 then
    redis.call('ZADD', queue_key .. ':prio', prio_score(prio), id)
  else
    redis.call('RPUSH', queue_key, id)
  end
  ring(bell)
end

-- A waiter of a limit is back on its queue (its node was `waiting`): queued again.
-- w = {id, q, b, n (nodes key), e (events key), node, p, s}
local function unpark(w, now)
  local state = redis.call('HGET', w.n, w.node .. ':state')
  if state ~= 'waiting' then
    return false -- canceled, or the run is gone: nothing to push
  end
  redis.call('HSET', w.n, w.node .. ':state', 'queued', w.node .. ':queued', now)
  redis.call('HDEL', w.n, w.node .. ':waiting', w.node .. ':parked')
  event({events = w.e, now = now}, w.node, 'queued')
  redis.call('HSET', 'rq:job:' .. w.id, 'status', 'queued')
  push(w.id, w.q, w.b, w.p)
  return true
end

-- The limit `K` has room: hand its slots to its first waiters, in order (a waiter that needs
-- more slots than are free holds the line: no smaller one overtakes it), reserving them (the
-- slot is the waiter's from now; its claim finds it held).
local function promote(K, now)
  local size = nil
  while true do
    local top = redis.call('ZRANGE', K .. ':wait', 0, 0)
    if #top == 0 then return end
    size = size or tonumber(redis.call('HGET', K, 'size')) or DEFAULT_POOL_SIZE
    local w = cjson.decode(top[1])
    local used = tonumber(redis.call('HGET', K, 'used')) or 0
    local state = redis.call('HGET', w.n, w.node .. ':state')
    if state == 'waiting' and used + w.s > size then return end
    redis.call('ZREM', K .. ':wait', top[1])
    if state == 'waiting' then
      redis.call('HSET', K, 'h:' .. w.id, w.s)
      redis.call('HINCRBY', K, 'used', w.s)
      local keyed = w.keyed or 0
      redis.call('HSET', w.n, w.node .. ':holds',
        cjson.encode({id = w.id, k = {{K, w.s, keyed}}}))
      unpark(w, now)
    end
  end
end

-- Give back what a node's attempt holds (`holds`: its `<node>:holds` field, read by the
-- caller, {id, k = {{limit key, slots, keyed}, ...}}), and let each limit's waiters in. A
-- limit of one key value (`concurrency_key`) with nothing held and nobody waiting is deleted:
-- keys per tenant stay bounded.
local function release(nodes, node, holds, now)
  if not holds then return end
  redis.call('HDEL', nodes, node .. ':holds')
  local h = cjson.decode(holds)
  for _, kn in ipairs(h.k) do
    local K = kn[1]
    local n = redis.call('HGET', K, 'h:' .. h.id)
    if n then
      redis.call('HDEL', K, 'h:' .. h.id)
      local used = redis.call('HINCRBY', K, 'used', -tonumber(n))
      promote(K, now)
      if kn[3] == 1 and used <= 0 and redis.call('EXISTS', K .. ':wait') == 0
          and tonumber(redis.call('HGET', K, 'used') or '0') <= 0 then
        redis.call('DEL', K)
        redis.call('SREM', FLOW .. 'limits', K)
      end
    end
  end
end

-- A waiting node leaves the line it waits in (its run was canceled).
local function unqueue(parked)
  if not parked then return end
  local key, member = string.match(parked, '^([^\n]*)\n(.*)$')
  if key then redis.call('ZREM', key, member) end
end

-- A run with `max_active_runs` starts: its roots go on their queues.
-- q = {id, r (run key), n (nodes key), e (events key)}; the roots are the run hash's 'roots'
-- field: [[job id, queue key, bell, node, priority], ...]
local function start_run(q, now)
  redis.call('HSET', q.r, 'state', 'running', 'started_at', now)
  event({events = q.e, now = now}, '', 'running')
  local roots = cjson.decode(redis.call('HGET', q.r, 'roots') or '[]')
  for _, root in ipairs(roots) do
    redis.call('HSET', q.n, root[4] .. ':state', 'queued', root[4] .. ':queued', now)
    event({events = q.e, now = now}, root[4], 'queued')
    redis.call('HSET', 'rq:job:' .. root[1], 'status', 'queued')
    push(root[1], root[2], root[3], root[5])
  end
end

-- A run of a DAG with `max_active_runs` ended: it leaves the DAG's active set, and the next
-- queued runs start while there is room. `gate` is the run hash's 'gate' field (JSON: the
-- active set key k, the limit max, the run's id).
local function run_ended(gate, now)
  if not gate then return end
  gate = cjson.decode(gate)
  local key, max = gate.k, tonumber(gate.max)
  redis.call('SREM', key, gate.id)
  while redis.call('SCARD', key) < max do
    local next_run = redis.call('ZPOPMIN', key .. ':queue')
    if #next_run == 0 then return end
    local q = cjson.decode(next_run[1])
    if redis.call('HGET', q.r, 'state') == 'queued' then
      redis.call('SADD', key, q.id)
      start_run(q, now)
    end
  end
end

-- ---------------------------------------------------------------- waits and events
-- (docs/waits.md)

-- dagrq.store.keys.TIMERS_KEY, EVENTS_KEY, EVENTS_MAX, EVENT_KEY_TTL_S
local TIMERS = 'dagrq:timers'
local EVENTS = 'dagrq:events'
local EVENT_STREAM_MAX = 100000
local EVENT_KEY_TTL = 604800
-- dagrq.model.waits.PARK_MIN_S, in ms
local PARK_MIN_MS = 1000

local function now_ms_of()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append an event to the event stream, once per dedup `key` (when given, not ''): the id
-- of the event (the earlier one's for a key seen within EVENT_KEY_TTL).
local function emit(name, data, key, now)
  local kk = nil
  if key and key ~= '' then
    kk = 'dagrq:events:key:' .. name .. ':' .. key
    local seen = redis.call('GET', kk)
    if seen then return {seen, '0'} end
  end
  local id = redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENT_STREAM_MAX, '*', 'name', name,
    'data', data, 'key', key or '', 'ts', now)
  if kk then redis.call('SET', kk, id, 'EX', EVENT_KEY_TTL) end
  return {id, '1'}
end

-- A node waiting for a signal or child runs has news: put it back on its queue (a worker
-- runs it again), or, not waiting now, note it (`<node>:wake`: park.lua then does not park
-- it). A node parked under PARK_MIN_MS ago is woken when it has been parked that long (its
-- worker may still be finishing the attempt that parked it). Returns what was done.
local function wake(n, node, now)
  local read = redis.call('HMGET', n, node .. ':state', node .. ':parked', node .. ':parked_ms')
  if read[1] == 'waiting' and read[2] then
    local key, member = string.match(read[2], '^([^\n]*)\n(.*)$')
    local since = tonumber(read[3] or '0') or 0
    if key == TIMERS and now_ms_of() - since < PARK_MIN_MS then
      redis.call('ZADD', TIMERS, since + PARK_MIN_MS, member)
      return 'soon'
    end
    redis.call('ZREM', key, member)
    unpark(cjson.decode(member), now)
    return 'woken'
  elseif read[1] and not is_final(read[1]) then
    redis.call('HSET', n, node .. ':wake', '1')
    return 'noted'
  end
  return 'ended'
end

-- A run ended in `state`: a child run wakes its parent's sub-DAG node ('parent': JSON
-- {n = the parent's nodes key, node}); a run that succeeded emits its DAG's event ('emits');
-- the run is counted, and its hooks hear of it.
local function run_over(run_key, state, now)
  local meta = redis.call('HMGET', run_key, 'parent', 'emits', 'dag', 'hooks', 'trace')
  local id = string.match(run_key, '{(.*)}')
  if meta[1] then
    local p = cjson.decode(meta[1])
    wake(p.n, p.node, now)
  end
  if meta[2] and state == 'succeeded' then
    local data = cjson.encode({run = id, dag = meta[3]})
    emit(meta[2], data, 'run:' .. id, now)
  end
  count(meta[3], 'run|' .. state)
  if meta[3] and (meta[4] or meta[5] or redis.call('EXISTS', TRACING) == 1) then
    hook(meta[3], id, 'end', state, '', now)
  end
end

-- When a node fired now with a delayed start may start (unix ms; its job hash's
-- `dagrq_delay`: {a = start_after ms, nb = not_before ms}), or nil for now (or within
-- PARK_MIN_MS: its worker sleeps that out).
local function delay_of(job_key)
  local raw = redis.call('HGET', job_key, 'dagrq_delay')
  if not raw then return nil end
  local d, now = cjson.decode(raw), now_ms_of()
  local due = math.max(now + (tonumber(d.a) or 0), tonumber(d.nb) or 0)
  if due - now < PARK_MIN_MS then return nil end
  return due
end

-- Park a node that fired with a delayed start until `due` (unix ms): `waiting` for its timer
-- (status shows "timer: starts at ..." from <node>:due); the claim that moves the timer puts
-- its job on its queue, and its attempt finds its start due (<node>:wait's start_due).
local function park_timer(R, name, due, w)
  local member = cjson.encode(w)
  redis.call('HSET', R.nodes, name .. ':state', 'waiting', name .. ':queued', R.now,
    name .. ':waiting', 'timer', name .. ':due', due,
    name .. ':wait', cjson.encode({start_due = due / 1000, since = tonumber(R.now)}),
    name .. ':parked', TIMERS .. '\n' .. member, name .. ':parked_ms', now_ms_of())
  redis.call('ZADD', TIMERS, due, member)
  event(R, name, 'waiting', 'reason', 'timer')
end

-- A node reached a final state: count it down; the last one ends the run. `why` is its error
-- (failed) or the reason it was skipped (a Skip, say), or nil. `started`: when the attempt
-- that ended it started (its duration is observed), or nil. R.dag: the DAG's name (counted).
local function finish(R, name, state, why, started)
  redis.call('HSET', R.nodes, name .. ':state', state, name .. ':ended', R.now)
  count(R.dag, 'n|' .. name .. '|' .. state)
  if started and (state == 'succeeded' or state == 'failed') then
    observe(R.dag, 'd|' .. name, tonumber(R.now) - tonumber(started))
  end
  if why and state == 'skipped' then
    redis.call('HSET', R.nodes, name .. ':reason', why)
    event(R, name, state, 'reason', why)
  elseif why and state == 'cached' then -- why: the run its output was kept from
    redis.call('HSET', R.nodes, name .. ':cached_from', why)
    event(R, name, state, 'from', why)
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
    run_ended(redis.call('HGET', R.run, 'gate'), R.now)
    run_over(R.run, R.state, R.now)
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
-- children[i] = {name, total, rule, job_id, prio, ctx, inputs, job_key, queue_key, bell,
--               enqueued_at}; R.priority is the run's priority (added to the child's)
-- Returns fired (children enqueued now) and ended: pairs {child, 'skipped'|'upstream_failed'}
-- of children that ended now or, on a redelivery, had ended so (the caller cascades those).
local function deliver(R, parent, outcome, chosen, redelivered, children)
  local fired, ended = {}, {}
  if outcome == 'cached' then -- a kept output counts as a success for every rule
    outcome = 'succeeded'
  end
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
        local prio = clamp_priority((R.priority or 0) + c.prio)
        local due = c.delayed and delay_of(c.job_key) or nil
        if due then -- a delayed start (start_after, not_before, dag.sleep): a timer, no worker
          park_timer(R, c.name, due, {id = c.job_id, q = c.queue_key, b = c.bell, n = R.nodes,
            e = R.events, node = c.name, p = prio})
        else
          redis.call('HSET', R.nodes, c.name .. ':state', 'queued', c.name .. ':queued', R.now)
          event(R, c.name, 'queued')
          redis.call('HSET', c.job_key, 'status', 'queued', 'enqueued_at', c.enqueued_at)
          push(c.job_id, c.queue_key, c.bell, prio)
        end
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

-- Children laid out by the callers: five KEYS from `key0 + 1` and five ARGV from `arg0 + 1`
-- per child (see complete.lua's header).
local function children_from(key0, arg0, n, enqueued_at)
  local out = {}
  for i = 1, n do
    local k, a = key0 + 5 * (i - 1), arg0 + 5 * (i - 1)
    out[i] = {
      name = ARGV[a + 1], total = tonumber(ARGV[a + 2]), rule = ARGV[a + 3], job_id = ARGV[a + 4],
      prio = tonumber(string.match(ARGV[a + 5], '^(-?%d+)')) or 0,
      delayed = string.sub(ARGV[a + 5], -1) == '~',
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
