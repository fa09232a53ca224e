-- pool_size.lua: size a pool (dagrq pools set NAME SIZE), and let its waiters in at once when
-- it grew. A pool that shrank below what is held lets nobody in until enough is given back
-- (nothing running is stopped).
--
-- KEYS[1]  the pool's hash   dagrq:flow:pool:<name>   size, used, kind, h:<job id> -> slots
-- ARGV[1]  the new size (a whole number >= 0), or '' to forget the size (back to the default)
-- ARGV[2]  now, unix seconds
--
-- Returns {size, used}. Keys touched: the pool's hash and line (<key>:wait), the set of
-- limits, and for each waiter let in its run's nodes hash, events, RQ job hash and queue.

if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'size')
else
  redis.call('HSET', KEYS[1], 'size', ARGV[1], 'kind', 'pool')
  redis.call('SADD', FLOW .. 'limits', KEYS[1])
end
promote(KEYS[1], ARGV[2])
local read = redis.call('HMGET', KEYS[1], 'size', 'used')
return {read[1] or tostring(DEFAULT_POOL_SIZE), read[2] or '0'}
