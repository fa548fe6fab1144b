-- Something the user holds turns into points as a fresh lot from mint, in whole units
-- (`unit_cards` of it → `unit_points` points), what was given up going to burn (one ledger
-- pair), idempotent by the request's id. Two kinds: 'exchange', one creator's small cards
-- (`popularity.exchange`), and 'purchase', the user's coin spent on points
-- (`popularity.buy`). The given-up side is told by a `balance.changed` (reason `exchange`
-- or `purchase`), the points' by the reply `popularity.points`.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - the request's id  ARGV[2] - amount given up  ARGV[3] - unit given up
-- ARGV[4] - unit points  ARGV[5] - now ms  ARGV[6] - lot lifetime ms  ARGV[7] - event log bound
-- ARGV[8] - route  ARGV[9] - the asset given up (an exchange: the creator's fan-club small
-- cards, `small_card.<creator>`; a purchase: `coin`)  ARGV[10] - 'exchange' | 'purchase'
-- ARGV[11] - amount bound (the points a balance may reach)
-- Returns {'applied' | 'exists', event JSON} | {'conflict', ''} | {'rejected', code}
local k = pop_keys(KEYS)
local kind = enum_arg(ARGV[10], 'kind', {exchange = true, purchase = true})
-- each kind its own record ids, reason and refusals
local prefix, short, unit_code = '$px:', 'insufficient_cards', 'exchange_unit'
if kind == 'purchase' then prefix, short, unit_code = '$pc:', 'insufficient_coin', 'buy_unit' end
local rid, cards = prefix .. ARGV[1], int_arg(ARGV[2], 'cards')
local unit_cards, unit_points = int_arg(ARGV[3], 'unit_cards'), int_arg(ARGV[4], 'unit_points')
local now, ttl, bound, route = int_arg(ARGV[5], 'now'), int_arg(ARGV[6], 'ttl'),
  events_bound(ARGV[7]), ARGV[8]
local card = ARGV[9]
if (card or '') == '' then fail('the card asset is missing') end
local amount_max = int_arg(ARGV[11], 'amount_max')

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
if cards % unit_cards ~= 0 then return {'rejected', unit_code} end
if hget_int(k.balances, card) < cards then return {'rejected', short} end
local points = math.floor(cards / unit_cards) * unit_points
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
if hget_int(k.balances, P) + points > amount_max then return {'rejected', 'points_full'} end
local left = redis.call('HINCRBY', k.balances, card, -cards)
redis.call('HINCRBY', k.system, 'burn:' .. card, cards)
ledger(k.ledger, rid, card, -cards, 'burn', kind, now)
-- the cards' side is an event of its own (every connection shows the balance it leaves);
-- the points' side below is the reply
emit(k.profile, k.events, k.channel, {type = 'balance.changed', transfer_id = rid, asset = card,
     delta = -cards, reason = kind, balance = left}, bound, '')
add_lot(k, rid, points, now + ttl, kind, now)
local ev = points_event(k, points, kind, bound, route)
redis.call('HSET', k.transfers, rid, cjson.encode({cards = cards, asset = card, ev = ev}))
return {'applied', ev}
