-- A fan's likes for a creator, on the fan's slot: the speed rule first (at most `max`
-- likes in any `window` ms; the rest are refused, not counted), then the fan's total for
-- the creator, and the fan-club level it reaches (an event of the fan's when it rises).
-- KEYS[1] - fan profile   KEYS[2] - like totals (creator → likes)
-- KEYS[3] - levels (creator → level)   KEYS[4] - recent likes (sorted set, for the speed rule)
-- KEYS[5] - fan event stream           KEYS[6] - fan channel
-- ARGV[1] - creator   ARGV[2] - count   ARGV[3] - now ms
-- ARGV[4] - speed window ms   ARGV[5] - likes allowed per window
-- ARGV[6] - level thresholds, ascending (`100,1000,10000`)   ARGV[7] - event log bound
-- Returns {'applied', counted, refused, total, level}
local k_profile, k_totals, k_levels, k_recent = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_events, k_channel = KEYS[5], KEYS[6]
local creator, count, now = ARGV[1], int_arg(ARGV[2], 'count'), int_arg(ARGV[3], 'now')
local window, allowed = int_arg(ARGV[4], 'window'), int_arg(ARGV[5], 'allowed')
local bound = events_bound(ARGV[7])
if count < 1 then fail('count must be at least 1') end
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
return {'applied', I(counted), I(refused), I(total), I(level)}
