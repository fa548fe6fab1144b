-- A purchase, step 1, on the order's own slot: an order id is one payment, platform-wide.
-- The first report records who paid, how much, and the points it buys; the same report
-- again finds that record (its points are granted, again idempotently, on the user's slot:
-- step 2, `pop_grant`), and another user or amount for the order is a conflict.
-- With ARGV[4] = 'release' the record is taken back if it is this (user, fen): the user's
-- slot refused the grant (an order granted before orders had records of their own).
-- KEYS[1] - the order (server/store/keys.py `purchase_order`)
-- ARGV[1] - user  ARGV[2] - fen  ARGV[3] - points the payment buys  ARGV[4] - '' | 'release'
-- Returns {'applied' | 'exists', points as first recorded} | {'conflict', ''}
local user, fen, points = ARGV[1], int_arg(ARGV[2], 'fen'), int_arg(ARGV[3], 'points')
if user == '' or fen < 1 or points < 1 then fail('a purchase needs a user, fen and points') end

local held = redis.call('HMGET', KEYS[1], 'user', 'fen', 'points')
if ARGV[4] == 'release' then
  if held[1] == user and held[2] == I(fen) then redis.call('DEL', KEYS[1]) end
  return {'applied', I(points)}
end
if held[1] then
  if held[1] ~= user or held[2] ~= I(fen) then return {'conflict', ''} end
  return {'exists', held[3]}
end
redis.call('HSET', KEYS[1], 'user', user, 'fen', I(fen), 'points', I(points))
return {'applied', I(points)}
