-- cancel.lua: end a running run as canceled; every node not yet final becomes canceled.
--
-- KEYS[1]  run hash     dagrq:run:{id}         state, ended_at, canceling; reads 'nodes' (JSON)
-- KEYS[2]  nodes hash   dagrq:run:{id}:nodes   <node>:state|ended
-- KEYS[3]  event stream dagrq:run:{id}:events  XADD one entry per node canceled, and the run's
-- ARGV[1]  now, unix seconds
--
-- Returns {"gone"} for no such run, {"<state>"} when the run had already ended, else
-- {"canceled", n_queued, queued..., running...}: the nodes that were queued (their jobs are
-- to leave their queues) and running (their jobs are to be stopped). Pending nodes need
-- nothing more: no arrival can fire a node that is not pending, and start.lua refuses to
-- start anything in a run that is not running.
--
-- Waits (docs/waits.md): a parked node leaves the timers; a child run of a sub-DAG node
-- wakes that node (its worker fails it: the child was canceled).
--
-- Flow control: what a node holds of a limit is given back (its waiters let in), a waiting
-- node leaves the line it waits in, and a run of a DAG with max_active_runs leaves its
-- active set (the next queued run starts) or, still queued itself, the queue.
--
-- What the caller has still to do is kept in the run hash ('canceling': the queued nodes, a
-- '|', the running ones, comma-separated) until the caller deletes it; a canceled run that
-- still has it answers the same lists again, so a second cancel finishes a first one that
-- died half-way.

-- event() lives in _lib.lua.

local function split(text)
  local out = {}
  for name in string.gmatch(text, '[^,]+') do out[#out + 1] = name end
  return out
end

local function reply(queued, running)
  local out = {'canceled', #queued}
  for _, n in ipairs(queued) do out[#out + 1] = n end
  for _, n in ipairs(running) do out[#out + 1] = n end
  return out
end

local R = {events = KEYS[3], now = ARGV[1]}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'gone'}
end
if state ~= 'running' and state ~= 'queued' then
  local todo = redis.call('HGET', KEYS[1], 'canceling')
  if state == 'canceled' and todo then
    local queued, running = string.match(todo, '^([^|]*)|(.*)$')
    return reply(split(queued), split(running))
  end
  return {state}
end
redis.call('HSET', KEYS[1], 'state', 'canceled', 'ended_at', ARGV[1])
run_over(KEYS[1], 'canceled', ARGV[1]) -- a child run wakes its parent's node
local gate = redis.call('HGET', KEYS[1], 'gate')
if state == 'queued' then
  local g = cjson.decode(gate)
  redis.call('ZREM', g.k .. ':queue', redis.call('HGET', KEYS[1], 'queued_as') or '')
else
  run_ended(gate, ARGV[1])
end
local queued, running = {}, {}
for _, node in ipairs(cjson.decode(redis.call('HGET', KEYS[1], 'nodes'))) do
  local read = redis.call('HMGET', KEYS[2], node .. ':state', node .. ':holds', node .. ':parked')
  local s = read[1]
  if s == 'pending' or s == 'queued' or s == 'running' or s == 'waiting' then
    redis.call('HSET', KEYS[2], node .. ':state', 'canceled', node .. ':ended', ARGV[1])
    release(KEYS[2], node, read[2] or nil, ARGV[1])
    unqueue(read[3] or nil)
    event(R, node, 'canceled')
    if s == 'queued' then
      queued[#queued + 1] = node
    elseif s == 'running' then
      running[#running + 1] = node
    end
  end
end
redis.call('HSET', KEYS[1], 'canceling', table.concat(queued, ',') .. '|' .. table.concat(running, ','))
event(R, '', 'canceled')
return reply(queued, running)
