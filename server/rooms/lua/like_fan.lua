-- A fan's likes for a creator, on the fan's slot: the speed rule first (at most `max`
-- likes in any `window` ms; the rest are refused, not counted), then the fan's total for
-- the creator, and the fan-club level it reaches (an event of the fan's when it rises), and
-- the daily task: the first `task` likes of a local day for a creator earn one small card of
-- the creator's fan club (its own asset, from mint, through the ledger), and `streak` task
-- days in a row one rare small card; a missed day restarts the streak.
-- KEYS[1] - fan profile   KEYS[2] - like totals (creator → likes)
-- KEYS[3] - levels (creator → level)   KEYS[4] - recent likes (sorted set, for the speed rule)
-- KEYS[5] - fan event stream           KEYS[6] - fan channel
-- KEYS[7] - like tasks   KEYS[8] - balances   KEYS[9] - system accounts   KEYS[10] - ledger
-- ARGV[1] - creator   ARGV[2] - count   ARGV[3] - now ms
-- ARGV[4] - speed window ms   ARGV[5] - likes allowed per window
-- ARGV[6] - level thresholds, ascending (`100,1000,10000`)   ARGV[7] - event log bound
-- ARGV[8] - today's day key   ARGV[9] - yesterday's   ARGV[10] - likes of the daily task
-- ARGV[11] - task days for the streak reward
-- ARGV[12] - the creator's small card asset   ARGV[13] - the creator's rare small card asset
-- Returns {'applied', counted, refused, total, level, likes today, streak} |
--         {'rejected', 'not_registered'} (a fan giftwire does not know gets no keys) |
--         {'rejected', 'risk_banned'} (the risk engine's ban, `risk_banned` on the profile)
local k_profile, k_totals, k_levels, k_recent = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_events, k_channel = KEYS[5], KEYS[6]
local k_tasks, k_balances, k_system, k_ledger = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local creator, count, now = ARGV[1], int_arg(ARGV[2], 'count'), int_arg(ARGV[3], 'now')
local window, allowed = int_arg(ARGV[4], 'window'), int_arg(ARGV[5], 'allowed')
local bound = events_bound(ARGV[7])
local today, yesterday = ARGV[8], ARGV[9]
local task_likes, streak_days = int_arg(ARGV[10], 'task_likes'), int_arg(ARGV[11], 'streak_days')
local card, rare_card = ARGV[12], ARGV[13]
if count < 1 then fail('count must be at least 1') end
if (card or '') == '' or (rare_card or '') == '' then fail('the card assets are missing') end
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0 then return {'rejected', 'not_registered'} end
-- the gateway's cached view refuses a banned fan's likes; this catches one that raced the
-- ban (sent before the view heard of it): nothing counted
if redis.call('HGET', k_profile, 'risk_banned') == '1' then return {'rejected', 'risk_banned'} end
local thresholds = {}
for t in string.gmatch(ARGV[6], '%d+') do thresholds[#thresholds + 1] = tonumber(t) end

redis.call('ZREMRANGEBYSCORE', k_recent, '-inf', I(now - window))
local recent = 0
for _, member in ipairs(redis.call('ZRANGE', k_recent, 0, -1)) do
  recent = recent + tonumber(string.match(member, ':(%d+)$'))
end
local counted = math.max(0, math.min(count, allowed - recent))
local refused = count - counted
local total = hget_int(k_totals, creator)
local level = hget_int(k_levels, creator)
if counted > 0 then
  local n = redis.call('HINCRBY', k_profile, 'like_batches', 1)
  redis.call('ZADD', k_recent, I(now), I(n) .. ':' .. I(counted))
  redis.call('PEXPIRE', k_recent, I(window * 2))
  total = redis.call('HINCRBY', k_totals, creator, I(counted))
  local reached = 0
  for i, t in ipairs(thresholds) do if total >= t then reached = i end end
  if reached > level then
    level = reached
    redis.call('HSET', k_levels, creator, I(level))
    emit(k_profile, k_events, k_channel, {type = 'likes.level', creator = creator, level = level,
         total = total}, bound, '')
  end
end
-- the daily task (per creator): counted likes of the local day, one reward a day
local t = redis.call('HMGET', k_tasks, creator .. ':d', creator .. ':n', creator .. ':done',
                     creator .. ':streak')
local n, streak = 0, tonumber(t[4] or '0')
if t[1] == today then n = tonumber(t[2] or '0') end
if t[3] ~= today and t[3] ~= yesterday then streak = 0 end  -- a missed day: restart
local function reward(asset, reason, id)
  local after = redis.call('HINCRBY', k_balances, asset, 1)
  redis.call('HINCRBY', k_system, 'mint:' .. asset, -1)
  ledger(k_ledger, id, asset, 1, 'mint', reason, now)
  emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = id, asset = asset,
       delta = 1, reason = reason, balance = after}, bound, '')
end
-- a gateway whose clock is behind (an older day than the stored one) leaves the task alone
local stale_day = t[1] and today < t[1]
if counted > 0 and not stale_day then
  n = n + counted
  redis.call('HSET', k_tasks, creator .. ':d', today, creator .. ':n', I(n))
  if n >= task_likes and t[3] ~= today then
    streak = streak + 1
    redis.call('HSET', k_tasks, creator .. ':done', today, creator .. ':streak', I(streak))
    reward(card, 'like_task', '$liketask:' .. creator .. ':' .. today)
    if streak % streak_days == 0 then
      reward(rare_card, 'like_streak', '$likestreak:' .. creator .. ':' .. today)
    end
  end
end
return {'applied', I(counted), I(refused), I(total), I(level), I(n), I(streak)}
