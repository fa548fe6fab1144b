-- An issuance of a given kind, on the stock's slot: `cards` cards of `asset` leave the stock
-- for the issuance `id` (an enterprise's batch or an order's gift: SPEC "issuance draws from
-- it and stops when it is empty"), once: the same id again takes nothing (its cards were
-- taken), another asset or count under it is a conflict.
-- KEYS[1] - the stock (server/store/keys.py NOTE_STOCK)
-- KEYS[2] - issuances taken: id → `<asset>|<cards>`
-- ARGV[1] - issuance id   ARGV[2] - asset   ARGV[3] - cards (>= 1)
-- Returns {'applied' | 'exists', the asset's stock now} | {'conflict', ''} |
--         {'rejected', 'stock_empty'} (fewer cards of the asset than that: nothing is taken)
local k_stock, k_taken = KEYS[1], KEYS[2]
local id, asset, cards = ARGV[1], ARGV[2], int_arg(ARGV[3], 'cards')
if id == '' or asset == '' or cards < 1 then fail('an issuance names an asset and takes cards') end
local fingerprint = asset .. '|' .. I(cards)

local stored = redis.call('HGET', k_taken, id)
if stored then
  if stored ~= fingerprint then return {'conflict', ''} end
  return {'exists', I(hget_int(k_stock, asset))}
end
if hget_int(k_stock, asset) < cards then return {'rejected', 'stock_empty'} end
local left = redis.call('HINCRBY', k_stock, asset, I(-cards))
redis.call('HINCRBY', k_stock, 'issued:' .. asset, I(cards))
redis.call('HSET', k_taken, id, fingerprint)
return {'applied', I(left)}
