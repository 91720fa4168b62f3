-- Count one raw entry of votes and XACK it, atomically: the check and the count of every
-- vote are one step keyed by (poll, user), whichever ingest process took the vote and
-- whichever worker runs this, so concurrent duplicates are counted once.
--
-- Counted once, as lua/apply_batch.lua: an entry no longer pending is skipped, and so is a
-- batch id already counted (acknowledged then). Every key is type-checked before the first
-- write: a batch that cannot be applied changes nothing and stays pending.
-- A vote counts only while its poll is open, or locked and not yet frozen, and only if it
-- was received before the poll's lock time; any other is refused and tallied in the poll's
-- `refused` field. The groups of a poll that could count are appended to its log, as ingest
-- packed them, so `emostream recount` can replay them in the order they were counted.
-- The rules (polls/ballots.py is the Python twin; keep them equal): quota > 0: up to quota
-- votes, repeats allowed; else up to vpu distinct options, and with changeable a new option
-- once the ballot is full moves the oldest one.
--
-- KEYS[1]  raw stream of the shard          KEYS[2]  batch-id marker (dedupe)
-- then for each vote group i (0-based), 5 keys from KEYS[3+5i]: poll hash, tally hash,
--          ballots hash, times hash (written for trivia only), log stream
-- ARGV[1]  consumer group                   ARGV[2]  entry id
-- ARGV[3]  TTL in seconds of the batch-id marker
-- ARGV[4]  number of vote groups
-- then for each group, 3 values: msgpack arrays of user ids, options and receive ms
-- Returns  {1, votes that changed a ballot, votes refused} when applied,
--          {0, 0, 0} when skipped as already counted,
--          {-1, "WRONGTYPE <key>"} when a key has the wrong type (nothing written).
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return {0, 0, 0}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return {0, 0, 0}
end
local expected = {'hash', 'hash', 'hash', 'hash', 'stream'}
local groups = tonumber(ARGV[4])
for i = 0, groups - 1 do
  for j = 1, 5 do
    local key = KEYS[2 + 5 * i + j]
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and kind ~= expected[j] then
      return {-1, 'WRONGTYPE ' .. key .. ' is a ' .. kind}
    end
  end
end
local counted, refused = 0, 0
for i = 0, groups - 1 do
  local k = 3 + 5 * i
  local poll, tally, ballots, times, log = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local a = 5 + 3 * i
  local users, options, received = cmsgpack.unpack(ARGV[a]), cmsgpack.unpack(ARGV[a + 1]),
    cmsgpack.unpack(ARGV[a + 2])
  local st = redis.call('HMGET', poll, 'state', 'lock_ms', 'frozen', 'vpu', 'changeable', 'quota',
    'kind')
  local countable = (st[1] == 'open' or st[1] == 'locked') and st[3] ~= '1'
  local lock_ms = tonumber(st[2])
  local vpu, changeable, quota = tonumber(st[4] or '1'), st[5] == '1', tonumber(st[6] or '0')
  local single = quota == 0 and vpu == 1 and not changeable
  local trivia = st[7] == 'trivia'

  local group_refused, considered = 0, false
  -- Tally changes are summed per option and written once per group, in first-seen order.
  local delta, changed_options, encoded = {}, {}, {}
  local function add(option, n)
    if delta[option] == nil then
      delta[option] = 0
      changed_options[#changed_options + 1] = option
    end
    delta[option] = delta[option] + n
  end
  for j = 1, #users do
    local user, option, at = users[j], options[j], received[j]
    if not countable or (lock_ms and at >= lock_ms) then
      group_refused = group_refused + 1
    else
      considered = true
      local changed = false
      if single then
        -- One vote per user: the ballot is written only if the user has none, one command.
        local ballot = encoded[option]
        if not ballot then
          ballot = cjson.encode({option})
          encoded[option] = ballot
        end
        if redis.call('HSETNX', ballots, user, ballot) == 1 then
          add(option, 1)
          changed = true
        end
      else
        local stored = redis.call('HGET', ballots, user)
        local ballot = stored and cjson.decode(stored) or {}
        if quota > 0 then
          if #ballot < quota then
            ballot[#ballot + 1] = option
            add(option, 1)
            changed = true
          end
        else
          local has = false
          for _, chosen in ipairs(ballot) do
            if chosen == option then has = true end
          end
          if not has then
            if #ballot < vpu then
              ballot[#ballot + 1] = option
              add(option, 1)
              changed = true
            elseif changeable then
              add(table.remove(ballot, 1), -1)
              ballot[#ballot + 1] = option
              add(option, 1)
              changed = true
            end
          end
        end
        if changed then
          redis.call('HSET', ballots, user, cjson.encode(ballot))
        end
      end
      if changed then
        if trivia then  -- points count from the answer's receive time
          redis.call('HSET', times, user, at)
        end
        counted = counted + 1
      end
    end
  end
  for _, option in ipairs(changed_options) do
    if delta[option] ~= 0 then
      redis.call('HINCRBY', tally, option, delta[option])
    end
  end
  if group_refused > 0 then
    redis.call('HINCRBY', poll, 'refused', group_refused)
    refused = refused + group_refused
  end
  if considered then
    redis.call('XADD', log, '*', 'e', ARGV[2], 'u', ARGV[a], 'o', ARGV[a + 1], 't', ARGV[a + 2])
  end
end
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[3]))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return {1, counted, refused}
