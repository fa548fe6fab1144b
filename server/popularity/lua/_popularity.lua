-- Popularity's prelude. Every script here works on one user's slot and takes the same
-- first 11 KEYS (server/popularity/flows.py `user_keys`): profile, balances, system,
-- transfers, ledger, events, channel, lots (lot → expiry ms), lot points (lot → points
-- left), state, card uses. Points are the asset `popularity`; the balance always equals
-- the points left in unexpired lots (the audit checks it).
local P = 'popularity'

local function pop_keys(KEYS)
  return {profile = KEYS[1], balances = KEYS[2], system = KEYS[3], transfers = KEYS[4],
          ledger = KEYS[5], events = KEYS[6], channel = KEYS[7], lots = KEYS[8],
          points = KEYS[9], state = KEYS[10], uses = KEYS[11]}
end

-- Burn the lots whose time is up (a lot granted at t expires at t + ttl, exactly). Not
-- while frozen: a fraud freeze stops the clock on the lots, and lifting it gives each lot
-- back the life it had left (`shift_lots`). Returns the points burned.
local function expire_lots(k, now)
  if redis.call('HEXISTS', k.state, 'frozen_at') == 1 then return 0 end
  local burned = 0
  for _, lot in ipairs(redis.call('ZRANGEBYSCORE', k.lots, '-inf', I(now))) do
    local left = tonumber(redis.call('HGET', k.points, lot) or '0')
    if left > 0 then
      redis.call('HINCRBY', k.balances, P, -left)
      redis.call('HINCRBY', k.system, 'burn:' .. P, left)
      ledger(k.ledger, 'expire:' .. lot, P, -left, 'burn', 'expire', now)
      burned = burned + left
    end
    redis.call('ZREM', k.lots, lot)
    redis.call('HDEL', k.points, lot)
  end
  return burned
end

-- A fresh lot of `amount` points from `account` (mint), expiring at `expires`.
local function add_lot(k, lot, amount, expires, kind, now)
  redis.call('HINCRBY', k.balances, P, amount)
  redis.call('HINCRBY', k.system, 'mint:' .. P, -amount)
  ledger(k.ledger, lot, P, amount, 'mint', kind, now)
  redis.call('ZADD', k.lots, I(expires), lot)
  redis.call('HSET', k.points, lot, I(amount))
end

-- Spend `amount` points, oldest lot (soonest to expire) first, to burn. The caller checked
-- the balance. Returns what came from where, {{expires ms, points}, ...}: a refund gives the
-- points back with the life they had (`refund_parts`), never a fresh 48 h.
local function take_oldest(k, amount, tid, now)
  local need = amount
  local parts = {}
  local lots = redis.call('ZRANGE', k.lots, 0, -1, 'WITHSCORES')
  for i = 1, #lots, 2 do
    if need == 0 then break end
    local lot = lots[i]
    local left = tonumber(redis.call('HGET', k.points, lot) or '0')
    local take = math.min(left, need)
    need = need - take
    if take > 0 then parts[#parts + 1] = {tonumber(lots[i + 1]), take} end
    if take == left then
      redis.call('ZREM', k.lots, lot)
      redis.call('HDEL', k.points, lot)
    else
      redis.call('HSET', k.points, lot, I(left - take))
    end
  end
  if need > 0 then fail('lots hold less than the balance said') end
  redis.call('HINCRBY', k.balances, P, -amount)
  redis.call('HINCRBY', k.system, 'burn:' .. P, amount)
  ledger(k.ledger, tid, P, -amount, 'burn', 'card_use', now)
  return parts
end

-- A use's price back (a cancel, a refusal): each part as a lot expiring when the lot it came
-- from would have (parts already past it stay burned; freezes lifted since the payment move
-- a part's expiry as they moved every lot's; while frozen, the lots' clock stopped at the
-- freeze, so a part still alive then comes back and the thaw shifts it with the rest, and
-- one that had expired before the freeze stays burned). A use paid before
-- a violation gets nothing back: the violation burned every unused point, and points parked
-- in a scheduled use must not escape it. A record from before parts were kept: a fresh lot.
-- Returns the points given back.
local function refund_parts(k, rec, use, ttl, now)
  local violated = tonumber(redis.call('HGET', k.state, 'violation_at') or '-1')
  if rec.paid_at and rec.paid_at <= violated then return 0 end
  local parts = rec.lots
  if not parts then parts = {{now + ttl, rec.price}} end
  -- the lots' clock: now, or the freeze's start while frozen; and the freezes lifted since
  -- the use was paid, which the lots it came from would have been given (`frz`: the
  -- frozen time summed at payment; a use recorded before it was kept gets none)
  local st = redis.call('HMGET', k.state, 'frozen_at', 'frozen_total')
  local clock = tonumber(st[1] or now)
  local shift = 0
  if rec.frz then shift = tonumber(st[2] or '0') - rec.frz end
  local back = 0
  for i, part in ipairs(parts) do
    local expires = part[1] + shift
    if expires > clock then
      add_lot(k, '$pr:' .. use .. ':' .. I(i), part[2], expires, 'refund', now)
      back = back + part[2]
    end
  end
  return back
end

local function points_of(k)
  return tonumber(redis.call('HGET', k.balances, P) or '0')
end

-- What `popularity.points` shows: balance, the lots soonest first (bounded; absent when
-- none: cjson would write an empty list as an object), frozen, and the sign-in streak.
local function points_view(k)
  local view = {type = 'popularity.points', balance = points_of(k),
                frozen = redis.call('HEXISTS', k.state, 'frozen_at') == 1,
                streak = tonumber(redis.call('HGET', k.state, 'streak') or '0')}
  local ids = redis.call('ZRANGE', k.lots, 0, 49, 'WITHSCORES')
  if #ids > 0 then
    view.lots = {}
    for i = 1, #ids, 2 do
      view.lots[#view.lots + 1] = {points = tonumber(redis.call('HGET', k.points, ids[i])),
                                   expires_at_ms = tonumber(ids[i + 1])}
    end
  end
  return view
end

-- The event of a change (`route`: the request it answers, or '').
local function points_event(k, delta, reason, bound, route)
  local event = points_view(k)
  event.delta, event.reason = delta, reason
  return emit(k.profile, k.events, k.channel, event, bound, route)
end
