-- Count one raw batch into its events' windows and XACK it, atomically: all or nothing.
--
-- Counted once: an entry no longer pending (acknowledged by whoever processed it first, e.g.
-- a claim racing a slow owner) is skipped, and so is a batch id already counted (a batch that
-- ingest appended twice after a lost reply); the latter is acknowledged. Redis does not roll
-- a script back, so every key is type-checked before the first write: a batch that cannot be
-- applied changes nothing and stays pending, to be retried and dead-lettered.
-- A tally for a window that already closed is still counted into the kept window keys and the
-- window is queued for a revision (KEYS[4]); past the revision horizon it is only tallied as
-- lost in the event's `lost` field.
--
-- KEYS[1]  raw stream of the shard          KEYS[2]  active-events sorted set of the shard
-- KEYS[3]  batch-id marker (dedupe)         KEYS[4]  late-windows set of the shard
-- KEYS[5]  the shard's scratch key for a HyperLogLog to merge (deleted again at once)
-- then for each window tally i (0-based), 5 keys from KEYS[6+5i]: event state hash, counts
--          sorted set, users HyperLogLog, total counter, window meta hash (seq once closed)
-- ARGV[1]  consumer group                   ARGV[2]  entry id
-- ARGV[3]  TTL in seconds of window keys and of the batch-id marker (the revision horizon)
-- ARGV[4]  number of window tallies
-- ARGV[5]  TTL in seconds of an event state hash this call creates or writes (close_window.lua
--          refreshes it with every publication)
-- then for each tally, 5 values from ARGV[6+5i]: event id, window start ms, total, msgpack
--          array of [emoji, count, emoji, count, ...], and the window's users: either the
--          msgpack array of the user ids (as ingest packed them; repeats are harmless to
--          PFADD), packed so the client sends 5 arguments, not one per user (per-argument
--          encoding in redis-py cost 80% of a worker's time), or, for a large tally, the
--          users' HyperLogLog built by the worker (emostream/hyperloglog.py: a dense HLL,
--          starting "HYLL", which a msgpack array never does), merged with PFMERGE: its cost
--          does not grow with the users, where PFADD was most of Redis's work per reaction.
-- Returns  {1, reactions counted late into closed windows, reactions lost late} when applied,
--          {0, 0, 0} when skipped as already counted,
--          {-1, "WRONGTYPE <key>"} when a key has the wrong type (nothing written).
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return {0, 0, 0}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return {0, 0, 0}
end
local expected = {'hash', 'zset', 'string', 'string', 'hash'}
for i = 0, tonumber(ARGV[4]) - 1 do
  for j = 1, 5 do
    local key = KEYS[5 + 5 * i + j]
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and kind ~= expected[j] then
      return {-1, 'WRONGTYPE ' .. key .. ' is a ' .. kind}
    end
  end
end
local ttl, event_ttl = tonumber(ARGV[3]), tonumber(ARGV[5])
local late, lost = 0, 0
for i = 0, tonumber(ARGV[4]) - 1 do
  local k = 6 + 5 * i
  local state, counts, users, total_key, meta = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local a = 6 + 5 * i
  local event_id, start, total = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])

  local st = redis.call('HMGET', state, 'next', 'seq', 'sealed')
  local next_start, seq = tonumber(st[1]), tonumber(st[2] or '0')
  -- A window of the event has been closed here, or (an event split over several shards)
  -- sealed for its own shard to close (lua/seal_window.lua).
  local closed_any = seq > 0 or st[3]
  local active = redis.call('ZSCORE', KEYS[2], event_id)
  -- First window of the event, an idle event waking up (no empty windows for the idle gap),
  -- or an earlier window arriving before anything of the event has closed.
  if next_start == nil or (not active and start > next_start) or (not closed_any and start < next_start) then
    next_start = start
    redis.call('HSET', state, 'next', start)
    redis.call('EXPIRE', state, event_ttl)
  end
  local count_it = true
  if start < next_start then
    if redis.call('EXISTS', meta) == 1 then
      late = late + total
      redis.call('SADD', KEYS[4], event_id .. ' ' .. start)
    else
      lost = lost + total
      redis.call('HINCRBY', state, 'lost', total)
      redis.call('EXPIRE', state, event_ttl)
      count_it = false
    end
  end
  if count_it then
    local flat = cmsgpack.unpack(ARGV[a + 3])
    for p = 1, #flat, 2 do
      redis.call('ZINCRBY', counts, flat[p + 1], flat[p])
    end
    redis.call('INCRBY', total_key, total)
    local packed = ARGV[a + 4]
    if string.sub(packed, 1, 4) == 'HYLL' then
      if redis.call('EXISTS', users) == 0 then
        redis.call('SET', users, packed)
      else
        redis.call('SET', KEYS[5], packed)
        redis.call('PFMERGE', users, KEYS[5])
        redis.call('DEL', KEYS[5])
      end
    else
      -- PFADD in chunks: Lua's unpack() is limited to a few thousand values.
      local ids = cmsgpack.unpack(packed)
      for u = 1, #ids, 1000 do
        redis.call('PFADD', users, unpack(ids, u, math.min(u + 999, #ids)))
      end
    end
    redis.call('EXPIRE', counts, ttl)
    redis.call('EXPIRE', users, ttl)
    redis.call('EXPIRE', total_key, ttl)
    if start >= next_start then
      -- GT still adds a new member; it only stops an older window from moving it back.
      redis.call('ZADD', KEYS[2], 'GT', start, event_id)
    end
  end
end
redis.call('SET', KEYS[3], '1', 'EX', ttl)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return {1, late, lost}
