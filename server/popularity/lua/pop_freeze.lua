-- A fraud finding freezes a user's points until an admin lifts it. While frozen nothing
-- is spent and nothing expires; lifting gives every lot back the life it had left when
-- frozen (its expiry moves by the frozen time), then expiry resumes.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - 'freeze' | 'lift'   ARGV[2] - now ms   ARGV[3] - event log bound
-- ARGV[4] - a lot's lifetime ms (a lot granted during the freeze lost only the frozen time
-- since its grant)
-- Returns {'applied' | 'exists', ''} | {'rejected', 'user_unknown'}
local k = pop_keys(KEYS)
local action = enum_arg(ARGV[1], 'action', {freeze = true, lift = true})
local now, bound, ttl = int_arg(ARGV[2], 'now'), events_bound(ARGV[3]), int_arg(ARGV[4], 'ttl')

if redis.call('HEXISTS', k.profile, 'registered_at_ms') == 0 then
  return {'rejected', 'user_unknown'}
end
local frozen_at = redis.call('HGET', k.state, 'frozen_at')
if action == 'freeze' then
  if frozen_at then return {'exists', ''} end
  local burned = expire_lots(k, now)
  if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
  redis.call('HSET', k.state, 'frozen_at', I(now))
else
  if not frozen_at then return {'exists', ''} end
  local ids = redis.call('ZRANGE', k.lots, 0, -1, 'WITHSCORES')
  for i = 1, #ids, 2 do
    local granted = tonumber(ids[i + 1]) - ttl
    local shift = now - math.max(tonumber(frozen_at), granted)
    if shift > 0 then redis.call('ZINCRBY', k.lots, I(shift), ids[i]) end
  end
  redis.call('HDEL', k.state, 'frozen_at')
  -- every freeze's length, summed: points parked in a use while frozen get it on a refund
  redis.call('HINCRBY', k.state, 'frozen_total', I(now - tonumber(frozen_at)))
end
emit(k.profile, k.events, k.channel, points_view(k), bound, '')
return {'applied', ''}
