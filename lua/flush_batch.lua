-- Append one packed batch to a raw shard and advance the producer's watermark, atomically.
--
-- KEYS[1]  raw stream of the shard
-- KEYS[2]  producers hash of the shard (producer id -> watermark ms)
-- ARGV[1]  approximate MAXLEN of the raw stream
-- ARGV[2]  producer id
-- ARGV[3]  watermark ms: the producer has flushed every reaction it received before this
-- ARGV[4]  packed batch (msgpack), or "" for a heartbeat that only moves the watermark
-- Returns  the new entry id, or false for a heartbeat.
-- Errors   whatever XADD raises (OOM); the watermark then stays where it was, so a window
--          never closes ahead of a batch that failed to land.
local id = false
if ARGV[4] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[4])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return id
