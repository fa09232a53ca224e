-- cache_put.lua: keep a node's output under its cache key, and keep the DAG's entries bounded
-- (the oldest go first). Entries live outside any run: their own TTL, not the run's.
--
-- KEYS[1]  the entry      dagrq:cache:<dag>:<node>:<key>   hash: o (output), r (run id), t (when)
-- KEYS[2]  the DAG's index dagrq:cache:<dag>               sorted set: <node>:<key> -> when
-- KEYS[3]  every DAG with entries  dagrq:cache-dags         set of DAG names
-- ARGV[1]  output bytes, ARGV[2] the run id, ARGV[3] now (unix s), ARGV[4] ttl_s,
-- ARGV[5]  <node>:<key> (the index member), ARGV[6] the entries kept at most, ARGV[7] the DAG,
-- ARGV[8]  the entry key's prefix, 'dagrq:cache:<dag>:' (an evicted member's key is it + member)
--
-- Two runs computing the same key at once both write: the entry holds the later write, one of
-- two equal outputs (a key names the code and the inputs).
-- Returns how many old entries were evicted.

redis.call('HSET', KEYS[1], 'o', ARGV[1], 'r', ARGV[2], 't', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[7])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if over <= 0 then
  return 0
end
local old = redis.call('ZPOPMIN', KEYS[2], over)
for i = 1, #old, 2 do
  redis.call('DEL', ARGV[8] .. old[i])
end
return over
