-- emit.lua: append one event to the event stream (dagrq emit, dagrq.emit), once per dedup key.
--
-- KEYS[1]  event stream  dagrq:events                     XADD (MAXLEN ~ 100000)
-- KEYS[2]  dedup key     dagrq:events:key:<name>:<key>     the first event's id (7 days)
-- ARGV[1]  event name
-- ARGV[2]  data, JSON
-- ARGV[3]  dedup key, or '' for none
-- ARGV[4]  now, unix seconds
--
-- Returns {event id, '1'} for a new event, {the earlier event's id, '0'} for a key seen.
-- (The key names are made by _lib.lua's emit, which a run's success shares: KEYS name them.)

return emit(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
