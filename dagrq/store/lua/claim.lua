-- claim.lua: take the next job waiting on any of a worker's queues, atomically moving it
-- into that queue's RQ intermediate list (`<queue key>:intermediate`). A job id is therefore
-- always in a queue list, a priority set, an intermediate list, a limit's line or (once RQ
-- starts it) the started registry: a worker that dies between the dequeue and the start leaves
-- its job where the reconciler finds it, never nowhere (RQ's own BLPOP dequeue over several
-- queues has that gap).
--
-- KEYS[1..n]  RQ queue lists, in the worker's order of preference   rq:queue:<name>
-- ARGV[1]     RQ's job hash prefix, 'rq:job:'
--
-- Per queue, the next job is the first of its priority set (`<queue key>:prio`) with a
-- priority above 0, else the list's head, else the first of the set (priorities below 0).
--
-- Flow control (docs/flow-control.md): a job whose hash has a `dagrq_gate` field (a node with
-- concurrency, a pool or a rate limit) is let through only when every limit has room; its
-- slots are taken (held by the attempt until its end: _lib.lua's release) and its start
-- counted in its rate window. Otherwise it is parked: it waits in the limit's line (a sorted
-- set, by priority then arrival), its node `waiting` with the reason, holding nothing, and the
-- next job is looked at. A concurrency limit's line moves when a slot is given back; a rate
-- limit's when its window has room again: the limit sits in `dagrq:flow:due` until then, and
-- every claim first moves the lines that are due.
--
-- Waits (docs/waits.md): every claim first moves the parked nodes whose timer is due
-- (`dagrq:timers`, up to 64 at a time) back onto their queues, so any worker moves them.
--
-- Returns {queue key, job id, field, value, ...}: the job claimed and its RQ job hash (read
-- in the same step, saving the worker a round trip; empty when the hash is gone), with a
-- cached node's peek ('~' fields, see peek_into); or, when nothing can be claimed, {'', ms}
-- with the milliseconds until a rate limit's line or a timer is due (the worker sleeps no
-- longer), or nil.
-- Keys touched: the queue lists, priority sets and intermediate lists named above, the claimed
-- job's hash, and for a gated job the keys its gate names (limit hashes and lines, rate
-- windows, its run's nodes hash and events); `dagrq:timers` and, for a due waiter, its job
-- hash, queue, doorbell, run's nodes hash and events. Key names are made here: this script
-- needs a Redis that is not a cluster, as all of dagrq does.

-- A rate window is counted at the claim, this much longer than its period: a body starts a
-- few ms after its claim, and the margin keeps every window of *starts* within the limit while
-- a busy worker takes up to this long from claim to start (dagrq.model.flow.RATE_MARGIN_MS)
local RATE_MARGIN_MS = 100

local now_ms = nil
local function now()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end
local function now_s()
  return string.format('%.3f', now() / 1000)
end

-- A rate limit's line whose window has room: let that many waiters back onto their queues.
local function move_due()
  local due = redis.call('ZRANGE', FLOW .. 'due', 0, 0, 'WITHSCORES')
  if #due == 0 or tonumber(due[2]) > now() then
    return due[2] and (tonumber(due[2]) - now()) or nil
  end
  for _, RK in ipairs(redis.call('ZRANGEBYSCORE', FLOW .. 'due', '-inf', now(), 'LIMIT', 0, 8)) do
    redis.call('ZREM', FLOW .. 'due', RK)
    local line = RK .. ':wait'
    local first = redis.call('ZRANGE', line, 0, 0)
    if #first > 0 then
      local w = cjson.decode(first[1])
      redis.call('ZREMRANGEBYSCORE', RK, '-inf', now() - w.ms)
      local free = w.c - redis.call('ZCARD', RK)
      while free > 0 do
        local top = redis.call('ZPOPMIN', line)
        if #top == 0 then break end
        if unpark(cjson.decode(top[1]), now_s()) then free = free - 1 end
      end
      if redis.call('EXISTS', line) == 1 then
        local oldest = redis.call('ZRANGE', RK, 0, 0, 'WITHSCORES')
        local at = #oldest > 0 and tonumber(oldest[2]) + w.ms or now() + math.ceil(w.ms / w.c)
        redis.call('ZADD', FLOW .. 'due', at, RK)
      end
    end
  end
  return nil
end

-- Park job `id` in line `line` (a limit's sorted set): its node waits, with `why`.
local function park(id, g, line, why, extra)
  local member = {id = id, q = g.q, b = g.b, n = g.n, e = g.e, node = g.node, p = g.p, s = 1}
  for k, v in pairs(extra or {}) do member[k] = v end
  local text = cjson.encode(member)
  redis.call('ZADD', line, prio_score(g.p), text)
  redis.call('HSET', g.n, g.node .. ':state', 'waiting', g.node .. ':waiting', why,
    g.node .. ':parked', line .. '\n' .. text)
  event({events = g.e, now = now_s()}, g.node, 'waiting', 'reason', why)
end

-- Let job `id` through its gate `g` (decoded `dagrq_gate`), or park it. True when let through.
local function admit(id, g)
  local state = redis.call('HGET', g.n, g.node .. ':state')
  if state ~= 'queued' and state ~= 'running' then
    return true -- not wanted any more (canceled, gone): start.lua says so, holding nothing
  end
  local key = nil
  if g.kf then -- the concurrency key is a field of a parent's output
    local out = redis.call('GET', g.kf[1])
    local ok, value = pcall(cjson.decode, out or 'null')
    local field = ok and type(value) == 'table' and value[g.kf[2]] or nil
    if field == nil or field == cjson.null then
      key = 'None'
    elseif type(field) == 'table' then
      key = string.sub(cjson.encode(field), 1, 200)
    else
      key = string.sub(tostring(field), 1, 200)
    end
  end
  local held, take = {}, {}
  for _, s in ipairs(g.slots) do
    local K, size, n, label = s[1], tonumber(s[2]), tonumber(s[3]), s[4]
    if key then
      K = string.gsub(K, '%%s$', function() return key end)
      label = string.gsub(label, '%%s$', function() return key end)
    end
    if size == 0 then size = tonumber(redis.call('HGET', K, 'size')) or DEFAULT_POOL_SIZE end
    local keyed = s[6] == 1 and 1 or 0
    if redis.call('HGET', K, 'h:' .. id) then
      held[#held + 1] = {K, n, keyed}
    else
      local used = tonumber(redis.call('HGET', K, 'used')) or 0
      if used + n > size then
        release(g.n, g.node, cjson.encode({id = id, k = held}), now_s())
        redis.call('HSET', K, 'size', size, 'kind', s[5])
        redis.call('SADD', FLOW .. 'limits', K)
        park(id, g, K .. ':wait', label .. ': ' .. used .. ' of ' .. size .. ' slots taken',
          {s = n, keyed = keyed})
        return false
      end
      take[#take + 1] = {K, n, size, s[5], keyed}
    end
  end
  if g.rate then
    local RK, count, label = g.rate[1], tonumber(g.rate[2]), g.rate[4]
    local ms = tonumber(g.rate[3]) + RATE_MARGIN_MS
    redis.call('ZREMRANGEBYSCORE', RK, '-inf', now() - ms)
    if redis.call('ZCARD', RK) >= count then
      local oldest = redis.call('ZRANGE', RK, 0, 0, 'WITHSCORES')
      local at = tonumber(oldest[2]) + ms
      release(g.n, g.node, cjson.encode({id = id, k = held}), now_s())
      park(id, g, RK .. ':wait', 'rate limit ' .. label .. ': next start in '
        .. string.format('%.1f', (at - now()) / 1000) .. ' s', {c = count, ms = ms})
      local due = redis.call('ZSCORE', FLOW .. 'due', RK)
      if not due or tonumber(due) > at then redis.call('ZADD', FLOW .. 'due', at, RK) end
      redis.call('SADD', FLOW .. 'limits', RK)
      return false
    end
    redis.call('ZADD', RK, now(), id .. '@' .. now())
    redis.call('PEXPIRE', RK, ms * 2)
  end
  for _, t in ipairs(take) do
    redis.call('HSET', t[1], 'h:' .. id, t[2], 'size', t[3], 'kind', t[4])
    redis.call('HINCRBY', t[1], 'used', t[2])
    redis.call('SADD', FLOW .. 'limits', t[1])
    held[#held + 1] = {t[1], t[2], t[5]}
  end
  if #held > 0 then
    redis.call('HSET', g.n, g.node .. ':holds', cjson.encode({id = id, k = held}))
  end
  return true
end

-- A cached node's job (its hash has `dagrq_peek`): what its cache check reads, appended to the
-- reply as fields named '~...' (the run's state, params, plan and refresh list, the node's
-- state, its fired-with set, its data parents' outputs), so the check costs no round trip more.
local function peek_into(reply, p)
  local function add(k, v)
    if v then
      reply[#reply + 1] = k
      reply[#reply + 1] = v
    end
  end
  local meta = redis.call('HMGET', p.r, 'state', 'params', 'plan', 'refresh')
  add('~state', meta[1])
  add('~params', meta[2])
  add('~plan', meta[3])
  add('~refresh', meta[4])
  add('~node', redis.call('HGET', p.n, p.node .. ':state'))
  local fired = redis.call('HGETALL', p.i)
  for j = 1, #fired, 2 do add('~fired:' .. fired[j], fired[j + 1]) end
  for _, o in ipairs(p.o) do add('~out:' .. o[1], redis.call('GET', o[2])) end
  add('~peeked', '1')
end

-- Parked nodes whose timer is due (docs/waits.md) go back on their queues, a few per claim;
-- the ms until the next one is due, or nil.
local function move_timers()
  local top = redis.call('ZRANGE', TIMERS, 0, 0, 'WITHSCORES')
  if #top == 0 then return nil end
  if tonumber(top[2]) > now() then return tonumber(top[2]) - now() end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', TIMERS, '-inf', now(), 'LIMIT', 0, 64)) do
    redis.call('ZREM', TIMERS, m)
    unpark(cjson.decode(m), now_s())
  end
  top = redis.call('ZRANGE', TIMERS, 0, 0, 'WITHSCORES')
  return #top > 0 and math.max(1, tonumber(top[2]) - now()) or nil
end

-- The next job id of queue `Q` (moved into its intermediate list), or nil.
local function next_of(Q)
  local prio = Q .. ':prio'
  local top = redis.call('ZRANGE', prio, 0, 0, 'WITHSCORES')
  if #top > 0 and tonumber(top[2]) < 0 then
    redis.call('ZREM', prio, top[1])
    redis.call('RPUSH', Q .. ':intermediate', top[1])
    return top[1]
  end
  local id = redis.call('LMOVE', Q, Q .. ':intermediate', 'LEFT', 'RIGHT')
  if id then return id end
  if #top > 0 then
    redis.call('ZREM', prio, top[1])
    redis.call('RPUSH', Q .. ':intermediate', top[1])
    return top[1]
  end
  return nil
end

local wait_ms = move_due()
local timer_ms = move_timers()
if timer_ms and (not wait_ms or timer_ms < wait_ms) then wait_ms = timer_ms end
for i = 1, #KEYS do
  while true do
    local id = next_of(KEYS[i])
    if not id then break end
    local fields = redis.call('HGETALL', ARGV[1] .. id)
    local gate, peek = nil, nil
    for j = 1, #fields, 2 do
      if fields[j] == 'dagrq_gate' then gate = fields[j + 1] end
      if fields[j] == 'dagrq_peek' then peek = fields[j + 1] end
    end
    if not gate or admit(id, cjson.decode(gate)) then
      local reply = {KEYS[i], id}
      for j = 1, #fields do
        reply[j + 2] = fields[j]
      end
      if peek then peek_into(reply, cjson.decode(peek)) end
      return reply
    end
    redis.call('RPOP', KEYS[i] .. ':intermediate') -- parked: not claimed after all
  end
end
if wait_ms then
  return {'', tostring(math.max(1, wait_ms))}
end
return nil
