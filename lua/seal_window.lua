-- Seal one window of an event on one of the other shards its reactions are spread over
-- (EMOSTREAM_EVENT_SPLIT), and return what the shard counted in it, for the event's own
-- shard to merge into the one record it publishes (lua/close_window.lua). Sealing moves the
-- event's `next` window on this shard past the window, so a reaction for it from now on is
-- late here (counted, and the window revised). Idempotent: a sealed window answers the same
-- (plus any late reactions), so a close that failed after sealing is simply done again.
--
-- KEYS[1]  active-events sorted set of the shard     KEYS[2]  event state hash (next)
-- KEYS[3]  window counts sorted set   KEYS[4]  window users HyperLogLog   KEYS[5]  total
-- KEYS[6]  window meta hash: marks the window sealed, so a reaction for it is late (counted
--          and revised), not lost, until the revision horizon (lua/apply_batch.lua)
-- ARGV[1]  event id                   ARGV[2]  window start ms   ARGV[3]  window length ms
-- ARGV[4]  (unused: kept for the wrapper's order) idle ms
-- ARGV[5]  TTL s of the window keys (the revision horizon)
-- ARGV[6]  TTL s of the event state
-- Returns  {total, {emoji, count, ...}, users HyperLogLog as stored or false}
local event_id, start = ARGV[1], tonumber(ARGV[2])
local window_end = start + tonumber(ARGV[3])
local next_start = tonumber(redis.call('HGET', KEYS[2], 'next'))
if next_start == nil or next_start < window_end then
  redis.call('HSET', KEYS[2], 'next', window_end)
end
-- Always: a window of the event has been sealed here, so an earlier one arriving later is
-- late (lua/apply_batch.lua), even where this shard first saw the event after this window.
redis.call('HSET', KEYS[2], 'sealed', 1)
redis.call('HSET', KEYS[6], 'sealed', 1)
redis.call('EXPIRE', KEYS[6], tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
-- Nothing of the event open here beyond this window: it leaves this shard's active set (a
-- reaction in a later window adds it again). Only the event's own shard keeps it for its
-- idle time; waiting for that here left it listed for good once the own shard retired it.
local newest = redis.call('ZSCORE', KEYS[1], event_id)
if newest and tonumber(newest) < window_end then
  redis.call('ZREM', KEYS[1], event_id)
end
local total = tonumber(redis.call('GET', KEYS[5]) or '0')
if total == 0 then
  return {0, {}, false}
end
for key = 3, 5 do
  redis.call('EXPIRE', KEYS[key], tonumber(ARGV[5]))
end
return {total, redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'), redis.call('GET', KEYS[4])}
