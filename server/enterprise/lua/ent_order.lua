-- An order paid in an enterprise's shop window, on the enterprise's slot: counted once in
-- its ROI (orders, GMV), with the gift it triggers fixed by the first report (asset, cards;
-- 0: none). The same order again finds it; another buyer or amount under the id is a
-- conflict. The gift is granted on the buyer's slot after this (`grant`, idempotent by the
-- order), and counted in the ROI's cards only once granted (ARGV[1] = 'granted').
-- KEYS[1] - the enterprise's figures and stats   KEYS[2] - its counted orders
-- ARGV[1] - 'count' | 'granted'   ARGV[2] - order id   ARGV[3] - buyer   ARGV[4] - fen
-- ARGV[5] - the gift's asset   ARGV[6] - its cards (0: the order triggers none)
-- Returns {'applied' | 'exists', asset, cards, granted '1' | '0'} | {'conflict', '', '', ''}
local action = enum_arg(ARGV[1], 'action', {count = true, granted = true})
local order, buyer = ARGV[2], ARGV[3]
local fen, asset, cards = int_arg(ARGV[4], 'fen'), ARGV[5], int_arg(ARGV[6], 'cards')
if order == '' or buyer == '' or fen < 1 or cards < 0 then fail('an order needs a buyer and fen') end

local held = redis.call('HGET', KEYS[2], order)
if held then
  local b, f, a, c, g = string.match(held, '^(.*)|(%d+)|(.*)|(%d+)|([01])$')
  if b ~= buyer or f ~= I(fen) then return {'conflict', '', '', ''} end
  if action == 'granted' and g == '0' then
    redis.call('HSET', KEYS[2], order, b .. '|' .. f .. '|' .. a .. '|' .. c .. '|1')
    redis.call('HINCRBY', KEYS[1], 'cards', c)
    return {'applied', a, c, '1'}
  end
  return {'exists', a, c, g}
end
if action == 'granted' then fail('a gift granted for an order never counted') end
redis.call('HSET', KEYS[2], order, buyer .. '|' .. I(fen) .. '|' .. asset .. '|' .. I(cards) .. '|0')
redis.call('HINCRBY', KEYS[1], 'orders', 1)
redis.call('HINCRBY', KEYS[1], 'gmv_fen', I(fen))
return {'applied', asset, I(cards), '0'}
