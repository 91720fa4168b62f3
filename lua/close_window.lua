-- Close one event's oldest open window: number it, store it in history, publish it.
--
-- Exactly once with any number of workers: it acts only if the event's `next` window is still
-- ARGV[1]; a second closer of the same window finds `next` moved and returns 0.
--
-- KEYS[1]  event state hash (next, seq)      KEYS[2]  window counts sorted set
-- KEYS[3]  window users HyperLogLog          KEYS[4]  window total counter
-- KEYS[5]  event history stream              KEYS[6]  active-events sorted set of the shard
-- ARGV[1]  window start ms                   ARGV[2]  window end ms
-- ARGV[3]  approximate MAXLEN of history     ARGV[4]  pub/sub channel
-- ARGV[5]  event id                          ARGV[6]  idle ms: retire the event once its
--                                                     newest active window is this old
-- Returns  the window's seq, or 0 if it was not this call's to close (closed already, or the
--          event was retired as idle).
-- Record   cmsgpack array [event_id, seq, start, end, total, unique_users, revision,
--          [emoji, count, ...]] (see emostream/records.py); history entry id is <seq>-0.
local next_start = redis.call('HGET', KEYS[1], 'next')
if tonumber(next_start) ~= tonumber(ARGV[1]) or not redis.call('ZSCORE', KEYS[6], ARGV[5]) then
  return 0
end
local flat = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 2, #flat, 2 do
  flat[i] = tonumber(flat[i])
end
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local unique_users = redis.call('PFCOUNT', KEYS[3])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'next', ARGV[2])
local record = cmsgpack.pack({ARGV[5], seq, tonumber(ARGV[1]), tonumber(ARGV[2]), total,
  unique_users, 0, flat})
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'w', record)
redis.call('PUBLISH', ARGV[4], record)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local newest = tonumber(redis.call('ZSCORE', KEYS[6], ARGV[5]))
if newest ~= nil and tonumber(ARGV[2]) - newest > tonumber(ARGV[6]) then
  redis.call('ZREM', KEYS[6], ARGV[5])
end
return seq
