-- Points granted as a fresh lot that expires `ttl` after now (a creator task, a purchase,
-- a refund, a partner's bonus), from mint, idempotent by its record id (the same id with
-- another amount is a conflict).
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - record id   ARGV[2] - points   ARGV[3] - reason   ARGV[4] - now ms
-- ARGV[5] - lot lifetime ms   ARGV[6] - event log bound   ARGV[7] - route
-- ARGV[8] - the bound on any balance (a grant past it is refused `amount_too_large`)
-- Returns {'applied' | 'exists', event JSON} | {'conflict', ''} | {'rejected', code}
local k = pop_keys(KEYS)
local rid, amount = ARGV[1], int_arg(ARGV[2], 'points')
local reason = enum_arg(ARGV[3], 'reason', {task = true, purchase = true, refund = true,
                                            partner = true})
local now, ttl, bound, route = int_arg(ARGV[4], 'now'), int_arg(ARGV[5], 'ttl'),
  events_bound(ARGV[6]), ARGV[7]
local amount_max = int_arg(ARGV[8], 'amount_max')
if amount < 1 then fail('a grant needs points') end

local stored = redis.call('HGET', k.transfers, rid)
if stored then
  local rec = cjson.decode(stored)
  if rec.points ~= amount then return {'conflict', ''} end
  return {'exists', rec.ev}
end
if redis.call('HEXISTS', k.profile, 'registered_at_ms') == 0 then
  return {'rejected', 'user_unknown'}
end
-- what is due expires first (whatever follows: it would at the next read), so the bound
-- is checked on the balance as it is now
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
if points_of(k) + amount > amount_max then return {'rejected', 'amount_too_large'} end
add_lot(k, rid, amount, now + ttl, reason, now)
local ev = points_event(k, amount, reason, bound, route)
redis.call('HSET', k.transfers, rid, cjson.encode({points = amount, ev = ev}))
return {'applied', ev}
