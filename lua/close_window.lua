-- Publish one event window: close the oldest open one, or revise a closed one that received
-- late reactions. Numbers it, stores it in history, publishes it.
--
-- Exactly once with any number of workers: a close acts only if the event's `next` window is
-- still ARGV[1] (and the event is active); a revision only if its SREM from the late set
-- succeeds. Any other call returns 0.
--
-- KEYS[1]  event state hash (next, seq)      KEYS[2]  window counts sorted set
-- KEYS[3]  window users HyperLogLog          KEYS[4]  window total counter
-- KEYS[5]  window meta hash (seq, rev)       KEYS[6]  event history stream
-- KEYS[7]  event revisions hash              KEYS[8]  active-events sorted set of the shard
-- KEYS[9]  late-windows set of the shard
-- ARGV[1]  window start ms                   ARGV[2]  window end ms
-- ARGV[3]  windows kept in history           ARGV[4]  pub/sub channel
-- ARGV[5]  event id                          ARGV[6]  idle ms: retire the event once its
--                                                     newest active window is this old
-- ARGV[7]  TTL s of the window keys after closing (the revision horizon)
-- ARGV[8]  field of the history entry that holds the record
-- Returns  the window's seq, or 0 if it was not this call's to publish.
-- Record   cmsgpack array [event_id, seq, start, end, total, unique_users, revision,
--          [emoji, count, ...]] (see emostream/records.py). A first publication is history
--          entry <seq>-0; a revision replaces the window's record in the revisions hash.
local start = tonumber(ARGV[1])
local next_start = tonumber(redis.call('HGET', KEYS[1], 'next'))
local seq, revision
if next_start == start and redis.call('ZSCORE', KEYS[8], ARGV[5]) then
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  revision = 0
  redis.call('HSET', KEYS[1], 'next', ARGV[2])
  redis.call('HSET', KEYS[5], 'seq', seq, 'rev', 0)
elseif next_start ~= nil and start < next_start
    and redis.call('SREM', KEYS[9], ARGV[5] .. ' ' .. ARGV[1]) == 1 then
  seq = tonumber(redis.call('HGET', KEYS[5], 'seq'))
  if seq == nil then
    return 0
  end
  revision = redis.call('HINCRBY', KEYS[5], 'rev', 1)
else
  return 0
end
local flat = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 2, #flat, 2 do
  flat[i] = tonumber(flat[i])
end
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local unique_users = redis.call('PFCOUNT', KEYS[3])
local record = cmsgpack.pack({ARGV[5], seq, start, tonumber(ARGV[2]), total, unique_users,
  revision, flat})
if revision == 0 then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], seq .. '-0', ARGV[8], record)
  -- Revisions of windows trimmed from history go with them.
  redis.call('HDEL', KEYS[7], seq - tonumber(ARGV[3]))
else
  redis.call('HSET', KEYS[7], seq, record)
end
redis.call('PUBLISH', ARGV[4], record)
-- Kept (not deleted) until the revision horizon, so a late batch can still be counted.
local ttl = tonumber(ARGV[7])
for k = 2, 5 do
  redis.call('EXPIRE', KEYS[k], ttl)
end
if revision == 0 then
  local newest = tonumber(redis.call('ZSCORE', KEYS[8], ARGV[5]))
  if newest ~= nil and tonumber(ARGV[2]) - newest > tonumber(ARGV[6]) then
    redis.call('ZREM', KEYS[8], ARGV[5])
  end
end
return seq
