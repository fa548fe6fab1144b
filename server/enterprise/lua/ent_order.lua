-- An order paid in an enterprise's shop window, on the enterprise's slot: counted once in
-- its ROI (orders, GMV, the cards its gifts issued). The same order again finds it; another
-- buyer or amount under the id is a conflict. The buyer's gift, if the order triggers one,
-- is granted on the buyer's slot after this (`grant`, idempotent by the order).
-- KEYS[1] - the enterprise's figures and stats   KEYS[2] - its counted orders
-- ARGV[1] - order id   ARGV[2] - buyer   ARGV[3] - fen   ARGV[4] - cards its gift issues (0: none)
-- Returns {'applied' | 'exists', cards as first counted} | {'conflict', ''}
local order, buyer = ARGV[1], ARGV[2]
local fen, cards = int_arg(ARGV[3], 'fen'), int_arg(ARGV[4], 'cards')
if order == '' or buyer == '' or fen < 1 or cards < 0 then fail('an order needs a buyer and fen') end
local record = buyer .. '|' .. I(fen) .. '|' .. I(cards)

local held = redis.call('HGET', KEYS[2], order)
if held then
  local b, f, c = string.match(held, '^(.*)|(%d+)|(%d+)$')
  if b ~= buyer or f ~= I(fen) then return {'conflict', ''} end
  return {'exists', c}
end
redis.call('HSET', KEYS[2], order, record)
redis.call('HINCRBY', KEYS[1], 'orders', 1)
redis.call('HINCRBY', KEYS[1], 'gmv_fen', I(fen))
redis.call('HINCRBY', KEYS[1], 'cards', I(cards))
return {'applied', I(cards)}
