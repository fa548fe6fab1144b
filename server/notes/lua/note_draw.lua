-- Step 1 of a task reward, on the stock's slot: draw each card's kind by the published
-- weights among the kinds still in stock, and take the cards from the stock. This is where
-- the odds are applied and the stock runs out. The draw is kept `ttl` seconds under the
-- reward's id, so a retry (a crash before step 2 credited it) finds the same cards; the
-- same id for another user or card count is a conflict. The random numbers come in ARGV
-- (one per card, uniform in [0, 2^52)): the draw is a function of them and the stock alone.
-- KEYS[1] - the stock (server/store/keys.py NOTE_STOCK)   KEYS[2] - this reward's draw
-- ARGV[1] - user   ARGV[2] - cards (n)   ARGV[3] - the draw is kept this many s
-- ARGV[4] - kinds (k)   ARGV[5 .. 4+k] - their assets   ARGV[5+k .. 4+2k] - their weights
-- ARGV[5+2k .. 4+2k+n] - one random number per card
-- Returns {'applied' | 'exists', draw json {user, cards, drawn: [asset per card]}} |
--         {'conflict', ''} | {'rejected', 'stock_empty'} (the kinds that can be drawn hold
--         fewer cards than asked: nothing is taken)
local k_stock, k_draw = KEYS[1], KEYS[2]
local user, cards = ARGV[1], int_arg(ARGV[2], 'cards')
local ttl, k = int_arg(ARGV[3], 'ttl'), int_arg(ARGV[4], 'kinds')
if user == '' or cards < 1 or ttl < 1 or k < 1 or #ARGV ~= 4 + 2 * k + cards then
  fail('a draw needs a user, cards, a ttl, kinds with weights and a random number per card')
end
local assets, weights, randoms = {}, {}, {}
for i = 1, k do
  assets[i] = ARGV[4 + i]
  weights[i] = int_arg(ARGV[4 + k + i], 'weight')
  if weights[i] < 0 then fail('a weight is never negative') end
end
for c = 1, cards do
  randoms[c] = int_arg(ARGV[4 + 2 * k + c], 'random')
  if randoms[c] < 0 then fail('a random number is never negative') end
end

local stored = redis.call('GET', k_draw)
if stored then
  local d = cjson.decode(stored)
  if d.user ~= user or d.cards ~= cards then return {'conflict', ''} end
  return {'exists', stored}
end

-- only kinds with a weight count: each card drawn leaves at least one such card while the
-- total lasts, so every card below finds a kind
local stock, left, total = redis.call('HMGET', k_stock, unpack(assets)), {}, 0
for i = 1, k do
  left[i] = tonumber(stock[i] or '0')
  if weights[i] > 0 then total = total + left[i] end
end
if total < cards then return {'rejected', 'stock_empty'} end

local drawn, taken = {}, {}
for c = 1, cards do
  local sum = 0
  for i = 1, k do
    if left[i] > 0 then sum = sum + weights[i] end
  end
  local x = randoms[c] % sum  -- exact: both below 2^53
  for i = 1, k do
    if left[i] > 0 and weights[i] > 0 then
      if x < weights[i] then
        drawn[c] = assets[i]
        left[i] = left[i] - 1
        taken[i] = (taken[i] or 0) + 1
        break
      end
      x = x - weights[i]
    end
  end
end
for i = 1, k do
  if taken[i] then
    redis.call('HINCRBY', k_stock, assets[i], I(-taken[i]))
    redis.call('HINCRBY', k_stock, 'issued:' .. assets[i], I(taken[i]))
  end
end
local json = cjson.encode({user = user, cards = cards, drawn = drawn})
redis.call('SET', k_draw, json, 'EX', I(ttl))
return {'applied', json}
