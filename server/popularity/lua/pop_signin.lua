-- The daily sign-in: `first` points on a streak's first day, `step` more each unbroken
-- day, at most `max`; once per local day; a missed day starts the streak again.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - today (yyyymmdd)  ARGV[2] - yesterday  ARGV[3] - now ms  ARGV[4] - lot lifetime ms
-- ARGV[5] - first  ARGV[6] - step  ARGV[7] - max  ARGV[8] - event log bound  ARGV[9] - route
-- Returns {'applied', event JSON} | {'exists', points view JSON} | {'rejected', code}
local k = pop_keys(KEYS)
local today, yesterday, now = ARGV[1], ARGV[2], int_arg(ARGV[3], 'now')
local ttl, first, step, max = int_arg(ARGV[4], 'ttl'), int_arg(ARGV[5], 'first'),
  int_arg(ARGV[6], 'step'), int_arg(ARGV[7], 'max')
local bound, route = events_bound(ARGV[8]), ARGV[9]

if redis.call('HEXISTS', k.profile, 'registered_at_ms') == 0 then
  return {'rejected', 'not_registered'}
end
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
local s = redis.call('HMGET', k.state, 'signin_day', 'streak')
if s[1] == today then return {'exists', cjson.encode(points_view(k))} end
local streak = 1
if s[1] == yesterday then streak = tonumber(s[2]) + 1 end
local amount = math.min(first + step * (streak - 1), max)
redis.call('HSET', k.state, 'signin_day', today, 'streak', I(streak))
add_lot(k, 'signin:' .. today, amount, now + ttl, 'signin', now)
return {'applied', points_event(k, amount, 'signin', bound, route)}
