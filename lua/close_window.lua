-- Publish event windows of one shard, in the order given: close each event's oldest open
-- window, or revise a closed one that received late reactions. Numbers each, stores it in
-- history, publishes it. Many windows per call: one call per window cost the closer a round
-- trip per event and window, too slow for thousands of events (docs/benchmarks.md).
--
-- Exactly once with any number of workers: a close acts only if the event's `next` window is
-- still that window's start (and the event is active); a revision only if its SREM from the
-- late set succeeds. Any other window gets 0. Each window runs under pcall, so one whose
-- keys are broken (a wrong type) fails alone, as a call of its own would, and the rest of
-- the call goes on.
--
-- An event split over several shards (EMOSTREAM_EVENT_SPLIT) is closed here, on its own
-- shard, with what the others counted in the window (lua/seal_window.lua) passed as the
-- window's extras: added to this shard's counts for the record, never written into its keys,
-- so a revision merges again from scratch.
--
-- KEYS[1]  active-events sorted set of the shard
-- KEYS[2]  late-windows set of the shard
-- KEYS[3], KEYS[4]  scratch keys of the shard for uniting HyperLogLogs (left deleted)
-- then for each window i (0-based), 7 keys from KEYS[5+7i]: event state hash (next, seq),
--          window counts sorted set, window users HyperLogLog, window total counter, window
--          meta hash (seq, rev), event history stream, event revisions hash
-- ARGV[1]  window length ms                  ARGV[2]  windows kept in history
-- ARGV[3]  pub/sub channel                   ARGV[4]  idle ms: retire an event once its
--                                                     newest active window is this old
--          (a channel with a hash tag is a sharded one, on Redis Cluster: SPUBLISH)
-- ARGV[5]  TTL s of the window keys after closing (the revision horizon)
-- ARGV[6]  field of the history entry that holds the record
-- ARGV[7]  TTL s of the event's own keys (state, history, revisions), refreshed by every
--          publication: an event idle this long is forgotten
-- then for each window i, 3 values from ARGV[8+3i]: event id, window start ms, extras: ''
--          or msgpack [total, [emoji, count, ...], users HyperLogLog, ...] of other shards
-- Returns  one reply per window: its seq, 0 if it was not this call's to publish, or the
--          error text if it failed.
-- Record   cmsgpack array [event_id, seq, start, end, total, unique_users, revision,
--          [emoji, count, ...]] (see emostream/records.py). A first publication is history
--          entry <seq>-0; a revision replaces the window's record in the revisions hash.
local active_key, late_key = KEYS[1], KEYS[2]
local window_ms, history_max = tonumber(ARGV[1]), tonumber(ARGV[2])
local channel, idle_ms, ttl, field = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local event_ttl = tonumber(ARGV[7])
local publish_command = channel:find('{', 1, true) and 'SPUBLISH' or 'PUBLISH'

local union, scratch = KEYS[3], KEYS[4]

-- Counts, total and unique users of this shard's window keys plus the other shards' extras.
local function merged(counts, users, total, extras)
  local x = cmsgpack.unpack(extras)
  local sums, order = {}, {}
  local function add(emoji, count)
    if sums[emoji] == nil then
      order[#order + 1] = emoji
      sums[emoji] = 0
    end
    sums[emoji] = sums[emoji] + count
  end
  redis.call('DEL', union)
  if total > 0 then
    local flat = redis.call('ZRANGE', counts, 0, -1, 'WITHSCORES')
    for i = 1, #flat, 2 do
      add(flat[i], tonumber(flat[i + 1]))
    end
    redis.call('PFMERGE', union, users)
  end
  for i = 1, #x[2], 2 do
    add(x[2][i], tonumber(x[2][i + 1]))
  end
  for i = 3, #x do
    redis.call('SET', scratch, x[i])
    redis.call('PFMERGE', union, scratch)
  end
  -- As ZRANGE orders them: count ascending, then emoji bytes.
  table.sort(order, function(a, b)
    if sums[a] ~= sums[b] then
      return sums[a] < sums[b]
    end
    return a < b
  end)
  local flat = {}
  for _, emoji in ipairs(order) do
    flat[#flat + 1] = emoji
    flat[#flat + 1] = sums[emoji]
  end
  local unique_users = redis.call('PFCOUNT', union)
  redis.call('DEL', union, scratch)
  return flat, total + tonumber(x[1]), unique_users
end

local function publish(k, event_id, start, extras)
  local state, counts, users, total_key = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local meta, history, revisions = KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local window_end = start + window_ms
  local next_start = tonumber(redis.call('HGET', state, 'next'))
  local newest = next_start == start and redis.call('ZSCORE', active_key, event_id)
  local seq, revision
  if newest then
    seq = redis.call('HINCRBY', state, 'seq', 1)
    revision = 0
    redis.call('HSET', state, 'next', window_end)
    redis.call('HSET', meta, 'seq', seq, 'rev', 0)
  elseif next_start ~= nil and start < next_start
      and redis.call('SREM', late_key, event_id .. ' ' .. start) == 1 then
    seq = tonumber(redis.call('HGET', meta, 'seq'))
    if seq == nil then
      return 0
    end
    revision = redis.call('HINCRBY', meta, 'rev', 1)
  else
    return 0
  end
  -- An empty window has no counts, users or total keys (a batch writes all three): most
  -- windows of a flood of one-off events are empty, so they skip those calls.
  local total = tonumber(redis.call('GET', total_key) or '0')
  local flat, unique_users = {}, 0
  if total > 0 then
    for key = k + 1, k + 3 do
      redis.call('EXPIRE', KEYS[key], ttl)
    end
  end
  if extras ~= '' then
    flat, total, unique_users = merged(counts, users, total, extras)
  elseif total > 0 then
    flat = redis.call('ZRANGE', counts, 0, -1, 'WITHSCORES')
    for i = 2, #flat, 2 do
      flat[i] = tonumber(flat[i])
    end
    unique_users = redis.call('PFCOUNT', users)
  end
  local record = cmsgpack.pack({event_id, seq, start, window_end, total, unique_users,
    revision, flat})
  if revision == 0 then
    redis.call('XADD', history, 'MAXLEN', '~', history_max, seq .. '-0', field, record)
    -- Revisions of windows trimmed from history go with them.
    redis.call('HDEL', revisions, seq - history_max)
  else
    redis.call('HSET', revisions, seq, record)
  end
  redis.call(publish_command, channel, record)
  -- Window keys are kept (not deleted) until the revision horizon, so a late batch can
  -- still be counted.
  redis.call('EXPIRE', meta, ttl)
  -- Together, so the history never outlives the seq it is numbered by (XADD of seq 1 on an
  -- older history would fail).
  redis.call('EXPIRE', state, event_ttl)
  redis.call('EXPIRE', history, event_ttl)
  redis.call('EXPIRE', revisions, event_ttl)
  if revision == 0 and window_end - tonumber(newest) > idle_ms then
    redis.call('ZREM', active_key, event_id)
  end
  return seq
end

local replies = {}
for i = 0, (#ARGV - 7) / 3 - 1 do
  local ok, reply = pcall(publish, 5 + 7 * i, ARGV[8 + 3 * i], tonumber(ARGV[9 + 3 * i]),
    ARGV[10 + 3 * i])
  if not ok then
    reply = type(reply) == 'table' and reply.err or tostring(reply)
  end
  replies[#replies + 1] = reply
end
return replies
