-- Step 2 of a gift, on the recipient's slot: credit the cards from escrow, or
-- hold them as an offer when the recipient confirms gifts, or reject (the
-- sender's step 3 then refunds). Idempotent by transfer id.
-- KEYS[1] - recipient profile     KEYS[2] - recipient balances
-- KEYS[3] - recipient system accounts   KEYS[4] - recipient transfer records
-- KEYS[5] - users the recipient blocked KEYS[6] - recipient pending offers
-- KEYS[7] - recipient ledger      KEYS[8] - recipient event stream
-- KEYS[9] - recipient channel
-- ARGV[1] - transfer id  ARGV[2] - sender  ARGV[3] - asset  ARGV[4] - count
-- ARGV[5] - room or ''   ARGV[6] - now ms  ARGV[7] - gift id
-- ARGV[8] - offer timeout ms  ARGV[9] - pending offers bound  ARGV[10] - amount bound
-- ARGV[11] - event log bound  ARGV[12] - sender's day key (restored on void)
-- ARGV[13] - 'void' when an operator gives up on the gift (a dead letter): unless this
--            side already decided, it is rejected with `operator_voided` and refunded
-- Returns {'delivered', ''} | {'offered', expires_ms} | {'rejected', code}
local tid, from, asset, gift_id = ARGV[1], ARGV[2], ARGV[3], ARGV[7]
local count = int_arg(ARGV[4], 'count')
local now = int_arg(ARGV[6], 'now')
local events_max = events_bound(ARGV[11])

local stored = redis.call('HGET', KEYS[4], tid)
if stored then
  local rec = cjson.decode(stored)
  if rec.st == 'offered' or rec.st == 'accepted' or rec.st == 'voided' then
    return {'offered', I(rec.exp)}
  end
  return {rec.st, rec.code or ''}
end

local function reject(code)
  redis.call('HSET', KEYS[4], tid, cjson.encode({st = 'rejected', code = code, from = from}))
  return {'rejected', code}
end

if ARGV[13] == 'void' then return reject('operator_voided') end
local p = redis.call('HMGET', KEYS[1], 'registered_at_ms', 'banned', 'confirm')
if not p[1] then return reject('recipient_unknown') end
if p[2] == '1' then return reject('recipient_banned') end
if redis.call('SISMEMBER', KEYS[5], from) == 1 then return reject('blocked') end
local balance = hget_int(KEYS[2], asset)
if balance + count > int_arg(ARGV[10], 'amount_max') then return reject('amount_too_large') end

local room = nil
if ARGV[5] ~= '' then room = ARGV[5] end
if p[3] == '1' then
  if redis.call('HLEN', KEYS[6]) >= int_arg(ARGV[9], 'offers_max') then
    return reject('offers_full')
  end
  local exp = now + int_arg(ARGV[8], 'offer_timeout')
  local ev = {type = 'gift.offer', transfer_id = tid, gift_id = gift_id, from = from,
              asset = asset, count = count, room = room, expires_at_ms = exp}
  local json = emit(KEYS[1], KEYS[8], KEYS[9], ev, events_max)
  redis.call('HSET', KEYS[6], tid, json)
  redis.call('HSET', KEYS[4], tid, cjson.encode({st = 'offered', from = from, exp = exp,
             asset = asset, count = count, gift_id = gift_id, day = ARGV[12]}))
  return {'offered', I(exp)}
end

local after = credit_from_escrow(KEYS[2], KEYS[3], KEYS[7], tid, asset, count, now)
emit(KEYS[1], KEYS[8], KEYS[9], {type = 'gift.received', transfer_id = tid, gift_id = gift_id,
     from = from, asset = asset, count = count, room = room, balance = after}, events_max)
redis.call('HSET', KEYS[4], tid, cjson.encode({st = 'delivered', from = from}))
return {'delivered', ''}
