-- purge.lua: take every job of one run out of one RQ queue, keeping the others in order.
-- Used after a cancel: a mapped node may have thousands of item jobs queued, which would
-- otherwise each be dequeued only to find the run over. One pass over the list: O(length).
--
-- KEYS[1]  RQ queue list   rq:queue:<name>
-- ARGV[1]  job id prefix of the run, 'dagrq-<run id>-'
--
-- Returns the number of job ids removed.

local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local prefix, keep, dropped = ARGV[1], {}, 0
for _, id in ipairs(ids) do
  if string.sub(id, 1, #prefix) == prefix then
    dropped = dropped + 1
  else
    keep[#keep + 1] = id
  end
end
if dropped > 0 then
  redis.call('DEL', KEYS[1])
  for i = 1, #keep, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(keep, i, math.min(i + 999, #keep)))
  end
end
return dropped
