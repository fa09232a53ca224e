-- take_lease.lua: remove one execution from RQ's started registry if its lease expired
-- before a cutoff, in one step: a lease renewed since the caller looked is left alone, and of
-- two callers only one removes it.
--
-- KEYS[1]  RQ started registry   rq:wip:<queue>      member '<job id>:<execution id>' -> expiry
-- ARGV[1]  the member
-- ARGV[2]  the cutoff, unix seconds: only a lease that expired before it is taken
--
-- Returns 1 when this call removed it, else 0.

local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) >= tonumber(ARGV[2]) then
  return 0
end
return redis.call('ZREM', KEYS[1], ARGV[1])
