-- signal.lua: a value for a wait node (Run.signal, dagrq signal). Kept in the node's signals
-- list for its worker to check against the node's type (a worker has the type; Redis has
-- not); a waiting node is woken for that (_lib.lua's wake), any other that is not final keeps
-- it until it runs. Exactly one value wins: the first the worker accepts ends the node.
--
-- KEYS[1]  run hash      dagrq:run:{id}                  read: state, ttl_s
-- KEYS[2]  nodes hash    dagrq:run:{id}:nodes            read: <node>:state; wake
-- KEYS[3]  signals list  dagrq:run:{id}:signals:<node>   RPUSH the signal
-- KEYS[4]  replies hash  dagrq:run:{id}:replies          <signal id> -> 'pending'
-- ARGV[1]  node name
-- ARGV[2]  the signal: JSON {id, value}
-- ARGV[3]  the signal's id
-- ARGV[4]  now, unix seconds
--
-- Returns {'woken'|'soon'} (the node was waiting: a worker checks the value now, or within a
-- second), {'kept', node state} (not waiting yet: checked when it runs), {'ended', node
-- state} (final: refused), {'run', run state} (the run is not live: refused), {'gone'}.

local meta = redis.call('HMGET', KEYS[1], 'state', 'ttl_s')
if not meta[1] then
  return {'gone'}
end
local state = redis.call('HGET', KEYS[2], ARGV[1] .. ':state')
if not state then
  return {'gone'}
end
if is_final(state) then
  return {'ended', state}
end
if meta[1] ~= 'running' and meta[1] ~= 'queued' then
  return {'run', meta[1]}
end
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], meta[2] or 86400)
redis.call('HSET', KEYS[4], ARGV[3], 'pending')
redis.call('EXPIRE', KEYS[4], meta[2] or 86400)
if state == 'waiting' then
  return {wake(KEYS[2], ARGV[1], ARGV[4])}
end
return {'kept', state}
