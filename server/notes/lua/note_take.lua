-- An issuance of a given kind, on the stock's slot: `cards` cards of `asset` leave the stock
-- for one recipient of an issuance (an enterprise's batch, an order's gift: SPEC "issuance
-- draws from it and stops when it is empty") before they are credited, once per id; and
-- come back ('return') when that credit was refused (the user unknown, their balance full),
-- so the stock counts only cards someone holds. A returned id may take again (the same
-- issuance sent again once the user can be credited).
-- KEYS[1] - the stock (server/store/keys.py NOTE_STOCK)
-- KEYS[2] - issuance takes: id → `<asset>|<cards>|taken` or `...|returned`
-- ARGV[1] - 'take' | 'return'   ARGV[2] - the take's id   ARGV[3] - asset   ARGV[4] - cards (>= 1)
-- Returns {'applied' | 'exists', the asset's stock now} | {'conflict', ''} (the id with another
--         asset or count) | {'rejected', 'stock_empty'} (a take of more than the stock holds:
--         nothing is taken) | {'not_found', ''} (a return of nothing taken)
local k_stock, k_taken = KEYS[1], KEYS[2]
local action = enum_arg(ARGV[1], 'action', {take = true, ['return'] = true})
local id, asset, cards = ARGV[2], ARGV[3], int_arg(ARGV[4], 'cards')
if id == '' or asset == '' or cards < 1 then fail('an issuance names an asset and takes cards') end
local fingerprint = asset .. '|' .. I(cards)

local stored = redis.call('HGET', k_taken, id)
local state = nil
if stored then
  local fp, st = string.match(stored, '^(.*)|(%a+)$')
  if fp ~= fingerprint then return {'conflict', ''} end
  state = st
end
if action == 'return' then
  if state ~= 'taken' then
    if state == 'returned' then return {'exists', I(hget_int(k_stock, asset))} end
    return {'not_found', ''}
  end
  local left = redis.call('HINCRBY', k_stock, asset, I(cards))
  redis.call('HINCRBY', k_stock, 'issued:' .. asset, I(-cards))
  redis.call('HSET', k_taken, id, fingerprint .. '|returned')
  return {'applied', I(left)}
end
if state == 'taken' then return {'exists', I(hget_int(k_stock, asset))} end
if hget_int(k_stock, asset) < cards then return {'rejected', 'stock_empty'} end
local left = redis.call('HINCRBY', k_stock, asset, I(-cards))
redis.call('HINCRBY', k_stock, 'issued:' .. asset, I(cards))
redis.call('HSET', k_taken, id, fingerprint .. '|taken')
return {'applied', I(left)}
