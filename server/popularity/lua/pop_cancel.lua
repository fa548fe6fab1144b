-- Cancelling a scheduled use, on the user's slot, in two idempotent calls around the
-- content's (its boost window removed, then its hash given back: content_claim
-- `release`): `mark` (only before the start: it will not start now), then `refund` (the price back as the lots it came from, each expiring as it would
-- have, told by a `refund` event; nothing for a use paid before a violation or whose lots
-- have expired, and then no `refund` event; the day's use given back). A use
-- refused, or still settling, is `use_unknown`; one started or ended, `use_started`.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - use id  ARGV[2] - 'mark' | 'refund'  ARGV[3] - now ms  ARGV[4] - lot lifetime ms
-- ARGV[5] - event log bound  ARGV[6] - route
-- Returns {'applied' | 'exists', content, event JSON or '', live room or '', content hash} |
--         {'rejected', code}
local k = pop_keys(KEYS)
local use, step = ARGV[1], enum_arg(ARGV[2], 'step', {mark = true, refund = true})
local now, ttl, bound, route = int_arg(ARGV[3], 'now'), int_arg(ARGV[4], 'ttl'),
  events_bound(ARGV[5]), ARGV[6]
local stored = redis.call('HGET', k.uses, use)
if not stored then return {'rejected', 'use_unknown'} end
local rec = cjson.decode(stored)
local room, hash = rec.room or '', rec.hash or ''
if rec.st == 'cancelled' then return {'exists', rec.content, rec.cev, room, hash} end
if step == 'mark' then
  if rec.st == 'cancelling' then return {'exists', rec.content, '', room, hash} end
  -- refused (it never boosted; its price came back) or still settling: nothing to cancel
  if rec.st == 'refused' or rec.st == 'paid' then return {'rejected', 'use_unknown'} end
  if rec.st ~= 'scheduled' or now >= rec.starts then return {'rejected', 'use_started'} end
  rec.st = 'cancelling'
  redis.call('HSET', k.uses, use, cjson.encode(rec))
  return {'applied', rec.content, '', room, hash}
end
if rec.st ~= 'cancelling' then fail('refund of a use not being cancelled: ' .. use) end
local burned = expire_lots(k, now)  -- first: the balance the user hears is today's
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
local back = refund_parts(k, rec, use, ttl, now)
redis.call('HINCRBY', k.state, 'uses:' .. rec.day, -1)
-- nothing back (its lots had expired, or a violation burned them): the cancel's own event
-- below says so with the balance; a refund of 0 would be noise
if back > 0 then points_event(k, back, 'refund', bound, '') end
rec.st = 'cancelled'
-- the cancel's own event is kept apart from the use's (a replayed use gets `popularity.used`)
rec.cev = emit(k.profile, k.events, k.channel, {type = 'popularity.use.state', use = use,
               state = 'cancelled', balance = points_of(k)}, bound, route)
redis.call('HSET', k.uses, use, cjson.encode(rec))
return {'applied', rec.content, rec.cev, room, hash}
