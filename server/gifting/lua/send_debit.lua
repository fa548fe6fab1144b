-- Step 1 of a gift, on the sender's slot: check every sender-side rule, then
-- move the cost out of the sender's balance: `count` into escrow, the festival
-- surplus to burn, the newcomer's free cards paid by the promotion account.
-- Idempotent by transfer id: a replay returns the stored record.
-- KEYS[1] - sender profile hash        KEYS[2] - sender balances hash
-- KEYS[3] - sender system accounts     KEYS[4] - sender transfer records
-- KEYS[5] - sender follows hash        KEYS[6] - users the sender blocked
-- KEYS[7] - users who blocked sender   KEYS[8] - sender daily counters (today)
-- KEYS[9] - sender ledger stream       KEYS[10] - sender event stream
-- KEYS[11] - sender channel
-- ARGV[1] - transfer id    ARGV[2] - recipient   ARGV[3] - asset  ARGV[4] - count
-- ARGV[5] - room or ''     ARGV[6] - now ms      ARGV[7] - fingerprint of the parameters
-- ARGV[8] - day key        ARGV[9] - gifts/day   ARGV[10] - VIP bonus gifts
-- ARGV[11] - gifts/day to one recipient          ARGV[12] - minimum follow age ms
-- ARGV[13], ARGV[14] - cost numerator, denominator (6/5 on festival days, else 1/1)
-- ARGV[15] - newcomer window ms   ARGV[16] - newcomer free cards
-- ARGV[17] - amount bound         ARGV[18] - day-counter TTL s
-- ARGV[19] - event log bound      ARGV[20] - gift id
-- ARGV[21] - route of the request (`<conn>/<n>` or ''): who gets a rejection as the reply
-- Returns {'new', record} | {'rejected', event} | {'exists', record} | {'conflict', ''}
local tid, to, asset, fp, gift_id = ARGV[1], ARGV[2], ARGV[3], ARGV[7], ARGV[20]
local count = int_arg(ARGV[4], 'count')
local now = int_arg(ARGV[6], 'now')
local events = events_bound(ARGV[19])

local stored = redis.call('HGET', KEYS[4], tid)
if stored then
  local rec = cjson.decode(stored)
  if rec.fp ~= fp then return {'conflict', ''} end
  return {'exists', stored}
end

local function reject(code)
  local ev = reject_event(tid, gift_id, code, {asset = asset})
  local json = emit(KEYS[1], KEYS[10], KEYS[11], ev, events, ARGV[21])
  redis.call('HSET', KEYS[4], tid, cjson.encode({st = 'rejected', fp = fp, code = code, ev = json}))
  return {'rejected', json}
end

local p = redis.call('HMGET', KEYS[1], 'registered_at_ms', 'banned', 'real_name', 'vip', 'free_used')
if not p[1] then return reject('sender_unknown') end
if p[2] == '1' then return reject('sender_banned') end
if p[3] ~= '1' then return reject('real_name_required') end
if redis.call('SISMEMBER', KEYS[6], to) == 1 or redis.call('SISMEMBER', KEYS[7], to) == 1 then
  return reject('blocked')
end
local since = redis.call('HGET', KEYS[5], to)
if not since then return reject('not_following') end
if now - tonumber(since) < int_arg(ARGV[12], 'follow_min') then
  return reject('follow_too_recent')
end
local limit = int_arg(ARGV[9], 'daily')
if p[4] == '1' then limit = limit + int_arg(ARGV[10], 'vip_bonus') end
local sent = hget_int(KEYS[8], 'sent')
if sent >= limit then return reject('daily_limit') end
if hget_int(KEYS[8], 'to:' .. to) >= int_arg(ARGV[11], 'pair') then return reject('pair_limit') end

local num, den = int_arg(ARGV[13], 'num'), int_arg(ARGV[14], 'den')
local cost = math.floor((count * num + den - 1) / den)
local free = 0
if now - tonumber(p[1]) < int_arg(ARGV[15], 'newcomer_window') then
  free = math.max(0, int_arg(ARGV[16], 'free_cards') - tonumber(p[5] or '0'))
  free = math.min(free, cost)
end
local pay = cost - free
local balance = hget_int(KEYS[2], asset)
if balance < pay then return reject('insufficient_balance') end
local bound = int_arg(ARGV[17], 'amount_max')
if cost > bound then return reject('amount_too_large') end

-- every check passed: write
local surplus = cost - count
if pay > 0 then redis.call('HINCRBY', KEYS[2], asset, I(-pay)) end
if free > 0 then
  redis.call('HINCRBY', KEYS[3], 'promo:' .. asset, I(-free))
  redis.call('HINCRBY', KEYS[1], 'free_used', I(free))
end
if surplus > 0 then redis.call('HINCRBY', KEYS[3], 'burn:' .. asset, I(surplus)) end
redis.call('HINCRBY', KEYS[3], 'escrow:' .. asset, I(count))
redis.call('HINCRBY', KEYS[8], 'sent', 1)
redis.call('HINCRBY', KEYS[8], 'to:' .. to, 1)
redis.call('EXPIRE', KEYS[8], ARGV[18])
ledger(KEYS[9], tid, asset, -pay, 'escrow', 'gift_out', now)
local rec = {st = 'escrowed', fp = fp, to = to, asset = asset, count = count, cost = cost,
             free = free, day = ARGV[8], gift_id = gift_id, room = ARGV[5], limit = limit}
local json = cjson.encode(rec)
redis.call('HSET', KEYS[4], tid, json)
return {'new', json}
