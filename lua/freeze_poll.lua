-- Freeze a locked poll's result once every vote received before its lock has been counted:
-- the caller passes the shard's safe watermark (aggregate/closer.py: every live producer has
-- flushed past it and the group acknowledged everything appended before), and the result is
-- frozen only when that has reached the lock time. From then on lua/apply_votes.lua refuses
-- the poll's votes, so the tally and the ballots stay as frozen.
--
-- KEYS[1]  poll hash                        KEYS[2]  tally hash
-- ARGV[1]  safe watermark ms of the shard   ARGV[2]  pub/sub channel
-- ARGV[3]  event id                         ARGV[4]  poll id
--          (a channel with a hash tag is a sharded one, on Redis Cluster: SPUBLISH)
-- Returns  1 when this call froze it, 0 when it was frozen already or cannot be yet.
-- Record   cmsgpack array ["poll", event_id, poll_id, version] (see emostream/records.py).
if redis.call('HGET', KEYS[1], 'frozen') == '1' then
  return 0
end
local lock_ms = tonumber(redis.call('HGET', KEYS[1], 'lock_ms'))
if not lock_ms or tonumber(ARGV[1]) < lock_ms then
  return 0
end
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'locked')
end
local flat = redis.call('HGETALL', KEYS[2])
local result = {}
for i = 1, #flat, 2 do
  result[flat[i]] = tonumber(flat[i + 1])
end
local encoded = '{}'
if #flat > 0 then
  encoded = cjson.encode(result)
end
redis.call('HSET', KEYS[1], 'frozen', '1', 'result', encoded)
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local publish_command = ARGV[2]:find('{', 1, true) and 'SPUBLISH' or 'PUBLISH'
redis.call(publish_command, ARGV[2], cmsgpack.pack({'poll', ARGV[3], ARGV[4], version}))
return 1
