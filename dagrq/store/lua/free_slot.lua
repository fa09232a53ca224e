-- free_slot.lua: the reconciler gives back a slot whose attempt is gone: its holder's node is
-- no longer queued, running or waiting with that hold (it ended, its run ended or expired).
-- Fenced: a holder whose node still holds the slot keeps it.
--
-- KEYS[1]  the limit's hash    dagrq:flow:...           h:<job id> -> slots, used
-- KEYS[2]  the holder's nodes  dagrq:run:{id}:nodes     <node>:state, <node>:holds
-- KEYS[3]  the holder's run    dagrq:run:{id}           state (a run that ended frees)
-- ARGV[1]  the holder's job id
-- ARGV[2]  its node
-- ARGV[3]  now, unix seconds
--
-- Returns 1 when the slot was given back (and the limit's waiters let in), else 0.

local n = redis.call('HGET', KEYS[1], 'h:' .. ARGV[1])
if not n then
  return 0
end
local read = redis.call('HMGET', KEYS[2], ARGV[2] .. ':state', ARGV[2] .. ':holds')
local live = redis.call('HGET', KEYS[3], 'state') == 'running'
if live and (read[1] == 'queued' or read[1] == 'running') and read[2] then
  local h = cjson.decode(read[2])
  for _, kn in ipairs(h.k) do
    if h.id == ARGV[1] and kn[1] == KEYS[1] then
      return 0 -- held by the attempt that runs
    end
  end
end
redis.call('HDEL', KEYS[1], 'h:' .. ARGV[1])
redis.call('HINCRBY', KEYS[1], 'used', -tonumber(n))
promote(KEYS[1], ARGV[3])
return 1
