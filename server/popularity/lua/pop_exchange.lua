-- One creator's small cards exchange into points: `unit_cards` cards → `unit_points`
-- points, whole units only; the cards go to burn and the points arrive as a fresh lot from
-- mint (one ledger pair), idempotent by the exchange id. The cards' side is told by a
-- `balance.changed` (reason `exchange`), the points' by the reply `popularity.points`.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - exchange id  ARGV[2] - cards  ARGV[3] - unit cards  ARGV[4] - unit points
-- ARGV[5] - now ms  ARGV[6] - lot lifetime ms  ARGV[7] - event log bound  ARGV[8] - route
-- ARGV[9] - the card asset (the creator's fan-club small cards, `small_card.<creator>`)
-- Returns {'applied' | 'exists', event JSON} | {'conflict', ''} | {'rejected', code}
local k = pop_keys(KEYS)
local rid, cards = '$px:' .. ARGV[1], int_arg(ARGV[2], 'cards')
local unit_cards, unit_points = int_arg(ARGV[3], 'unit_cards'), int_arg(ARGV[4], 'unit_points')
local now, ttl, bound, route = int_arg(ARGV[5], 'now'), int_arg(ARGV[6], 'ttl'),
  events_bound(ARGV[7]), ARGV[8]
local card = ARGV[9]
if (card or '') == '' then fail('the card asset is missing') end

local stored = redis.call('HGET', k.transfers, rid)
if stored then
  local rec = cjson.decode(stored)
  -- an exchange stored before cards were per creator burned the shared `small_card`
  if rec.cards ~= cards or (rec.asset or 'small_card') ~= card then return {'conflict', ''} end
  return {'exists', rec.ev}
end
if redis.call('HEXISTS', k.profile, 'registered_at_ms') == 0 then
  return {'rejected', 'not_registered'}
end
if cards % unit_cards ~= 0 then return {'rejected', 'exchange_unit'} end
if hget_int(k.balances, card) < cards then return {'rejected', 'insufficient_cards'} end
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
local left = redis.call('HINCRBY', k.balances, card, -cards)
redis.call('HINCRBY', k.system, 'burn:' .. card, cards)
ledger(k.ledger, rid, card, -cards, 'burn', 'exchange', now)
-- the cards' side is an event of its own (every connection shows the balance it leaves);
-- the points' side below is the reply
emit(k.profile, k.events, k.channel, {type = 'balance.changed', transfer_id = rid, asset = card,
     delta = -cards, reason = 'exchange', balance = left}, bound, '')
local points = math.floor(cards / unit_cards) * unit_points
add_lot(k, rid, points, now + ttl, 'exchange', now)
local ev = points_event(k, points, 'exchange', bound, route)
redis.call('HSET', k.transfers, rid, cjson.encode({cards = cards, asset = card, ev = ev}))
return {'applied', ev}
