-- The platform reports a content violation: every unused point burns (frozen or not),
-- once per violation id, and the user is told; uses paid before it refund nothing if
-- cancelled or refused later (`violation_at`, read by `refund_parts`).
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - violation id   ARGV[2] - now ms   ARGV[3] - event log bound
-- Returns {'applied' | 'exists', points burned} | {'rejected', 'user_unknown'}
local k = pop_keys(KEYS)
local rid, now, bound = '$pz:' .. ARGV[1], int_arg(ARGV[2], 'now'), events_bound(ARGV[3])

local stored = redis.call('HGET', k.transfers, rid)
if stored then return {'exists', stored} end
if redis.call('HEXISTS', k.profile, 'registered_at_ms') == 0 then
  return {'rejected', 'user_unknown'}
end
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
local all = points_of(k)
if all > 0 then
  for _, lot in ipairs(redis.call('ZRANGE', k.lots, 0, -1)) do
    redis.call('ZREM', k.lots, lot)
    redis.call('HDEL', k.points, lot)
  end
  redis.call('HINCRBY', k.balances, P, -all)
  redis.call('HINCRBY', k.system, 'burn:' .. P, all)
  ledger(k.ledger, rid, P, -all, 'burn', 'violation', now)
end
points_event(k, -all, 'violation', bound, '')
redis.call('HSET', k.state, 'violation_at', I(now))
redis.call('HSET', k.transfers, rid, I(all))
return {'applied', I(all)}
