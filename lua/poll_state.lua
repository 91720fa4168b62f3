-- Change one poll atomically: create or replace its draft, or move it to its next state,
-- then publish a poll record so delivery nodes send the new poll object.
--
-- KEYS[1]  poll hash                        KEYS[2]  ballots hash
-- KEYS[3]  times hash                       KEYS[4]  event's polls sorted set
-- KEYS[5]  live polls set of the shard      KEYS[6]  event's leaderboard sorted set
-- ARGV[1]  action: put | open | lock | reveal | close
-- ARGV[2]  now ms                           ARGV[3]  pub/sub channel
-- ARGV[4]  event id                         ARGV[5]  poll id
--          (a channel with a hash tag is a sharded one, on Redis Cluster: SPUBLISH)
-- put:     ARGV[6] definition JSON, ARGV[7] votes per user, ARGV[8] changeable (0/1),
--          ARGV[9] quota (0: none), ARGV[10] kind, ARGV[11] answer ('' none)
-- others:  ARGV[6] states it may start from (space-separated), ARGV[7] state it leads to,
--          ARGV[8] open: duration ms (0: none); lock: lock ms (now + grace)
--          ARGV[9] reveal: answer ('' keeps the stored one), ARGV[10] trivia window ms
-- Returns  {1, state, created (1/0)} when done,
--          {0, current state} when the poll is not in a state the action starts from,
--          {-2, ''} for an unknown poll, {-3, 'answer'} for a trivia reveal without answer,
--          {-4, 'frozen'} for a reveal before the result is frozen.
-- Record   cmsgpack array ["poll", event_id, poll_id, version] (see emostream/records.py).
-- Trivia   a reveal adds each correct answer's points to the leaderboard, once: 1000 at the
--          open, falling linearly to 500 at the window and 500 after (polls/ballots.py).
local poll, action, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local state = redis.call('HGET', poll, 'state')
local created = 0
if action == 'put' then
  if state and state ~= 'draft' then
    return {0, state}
  end
  if not state then
    created = 1
    redis.call('ZADD', KEYS[4], now, ARGV[5])
  end
  redis.call('HSET', poll, 'def', ARGV[6], 'vpu', ARGV[7], 'changeable', ARGV[8],
    'quota', ARGV[9], 'kind', ARGV[10], 'answer', ARGV[11], 'state', 'draft')
else
  if not state then
    return {-2, ''}
  end
  local allowed = false
  for from in string.gmatch(ARGV[6], '%S+') do
    if from == state then allowed = true end
  end
  if not allowed then
    return {0, state}
  end
  local target = ARGV[7]
  if action == 'open' then
    redis.call('HSET', poll, 'opened_ms', now)
    local duration = tonumber(ARGV[8])
    if duration > 0 then
      redis.call('HSET', poll, 'lock_ms', now + duration)
    end
    redis.call('SADD', KEYS[5], ARGV[4] .. ' ' .. ARGV[5])
  elseif action == 'lock' then
    local lock_ms = tonumber(redis.call('HGET', poll, 'lock_ms'))
    if not lock_ms or lock_ms > tonumber(ARGV[8]) then
      redis.call('HSET', poll, 'lock_ms', ARGV[8])
    end
  elseif action == 'reveal' then
    if redis.call('HGET', poll, 'frozen') ~= '1' then
      return {-4, 'frozen'}
    end
    if ARGV[9] ~= '' then
      redis.call('HSET', poll, 'answer', ARGV[9])
    end
    if redis.call('HGET', poll, 'kind') == 'trivia' then
      local answer = redis.call('HGET', poll, 'answer')
      if not answer or answer == '' then
        return {-3, 'answer'}
      end
      local opened = tonumber(redis.call('HGET', poll, 'opened_ms'))
      local window = tonumber(ARGV[10])
      local all = redis.call('HGETALL', KEYS[2])
      for i = 1, #all, 2 do
        local ballot = cjson.decode(all[i + 1])
        if ballot[#ballot] == answer then
          local elapsed = tonumber(redis.call('HGET', KEYS[3], all[i])) - opened
          elapsed = math.min(math.max(elapsed, 0), window)
          -- floor(1000 - 500 * elapsed / window + 1/2), in integers (exact below 2^53)
          local points = 1000 - math.floor((1000 * elapsed + window - 1) / (2 * window))
          redis.call('ZINCRBY', KEYS[6], points, all[i])
        end
      end
    end
  end
  redis.call('HSET', poll, 'state', target)
  state = target
end
local version = redis.call('HINCRBY', poll, 'version', 1)
local publish_command = ARGV[3]:find('{', 1, true) and 'SPUBLISH' or 'PUBLISH'
redis.call(publish_command, ARGV[3], cmsgpack.pack({'poll', ARGV[4], ARGV[5], version}))
return {1, state, created}
