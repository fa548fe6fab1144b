-- Step 1 of a task reward, on the stock's slot: draw each card's kind by the published
-- weights among the kinds still in stock, and take the cards from the stock. This is where
-- the odds are applied and the stock runs out. The draw stays pending under `<user>
-- <reward>` until it is settled (`note_settle`: credited, or given back), so a retry after
-- a crash before the credit finds the same cards; the same pending reward with another
-- card count is a conflict. The random numbers come in ARGV (one per card, uniform in
-- [0, 2^52)): the draw is a function of them and the stock alone.
-- KEYS[1] - the stock (server/store/keys.py NOTE_STOCK)
-- KEYS[2] - pending draws (NOTE_PENDING)   KEYS[3] - pending draws by time (NOTE_PENDING_AT)
-- ARGV[1] - user   ARGV[2] - reward id   ARGV[3] - cards (n)   ARGV[4] - this draw's nonce
-- ARGV[5] - now ms   ARGV[6] - kinds (k)   ARGV[7 .. 6+k] - their assets
-- ARGV[7+k .. 6+2k] - their weights   ARGV[7+2k .. 6+2k+n] - one random number per card
-- Returns {'applied' | 'exists', draw json {user, reward, cards, nonce, drawn: [asset per
--         card]}} | {'conflict', ''} | {'rejected', 'stock_empty'} (the kinds that can be
--         drawn hold fewer cards than asked: nothing is taken)
local k_stock, k_pending, k_pending_at = KEYS[1], KEYS[2], KEYS[3]
local user, reward, cards = ARGV[1], ARGV[2], int_arg(ARGV[3], 'cards')
local nonce, now, k = ARGV[4], int_arg(ARGV[5], 'now'), int_arg(ARGV[6], 'kinds')
if user == '' or reward == '' or nonce == '' or cards < 1 or k < 1
    or #ARGV ~= 6 + 2 * k + cards then
  fail('a draw needs a user, a reward, cards, a nonce, kinds with weights and a random number per card')
end
local assets, weights, randoms = {}, {}, {}
for i = 1, k do
  assets[i] = ARGV[6 + i]
  weights[i] = int_arg(ARGV[6 + k + i], 'weight')
  if weights[i] < 0 then fail('a weight is never negative') end
end
for c = 1, cards do
  randoms[c] = int_arg(ARGV[6 + 2 * k + c], 'random')
  if randoms[c] < 0 then fail('a random number is never negative') end
end
local field = user .. ' ' .. reward

local stored = redis.call('HGET', k_pending, field)
if stored then
  if cjson.decode(stored).cards ~= cards then return {'conflict', ''} end
  -- asked again: its wait starts anew, so the sweep does not give back what this credits
  redis.call('ZADD', k_pending_at, I(now), field)
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
local json = cjson.encode({user = user, reward = reward, cards = cards, nonce = nonce, drawn = drawn})
redis.call('HSET', k_pending, field, json)
redis.call('ZADD', k_pending_at, I(now), field)
return {'applied', json}
