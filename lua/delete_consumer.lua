-- Delete a consumer from the aggregators group and return what it held at that instant, in
-- one step: XGROUP DELCONSUMER drops the consumer's pending entries with it, and a stalled
-- worker may read more in between a separate read and the delete (aggregate/consumers.py).
-- A script, not MULTI: redis-py's asyncio cluster client cannot run MULTI safely.
--
-- KEYS[1]  raw stream of the shard
-- ARGV[1]  consumer group                   ARGV[2]  consumer name
-- ARGV[3]  most pending entries to return
-- Returns  the ids of the entries the consumer held (at most ARGV[3]).
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
local ids = {}
for i, entry in ipairs(held) do
  ids[i] = entry[1]
end
return ids
