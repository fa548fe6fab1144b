-- Step 3 of a gift, on the sender's slot: record what the recipient's side did
-- and tell the sender. A rejection or a void refunds everything step 1 moved
-- (cards, free quota, burned surplus) and gives the daily quota back.
-- Idempotent: a transition already made returns the stored reply.
-- KEYS[1] - sender profile   KEYS[2] - sender balances   KEYS[3] - sender system accounts
-- KEYS[4] - sender transfer records   KEYS[5] - daily counters of the gift's day
-- KEYS[6] - daily counters of today   KEYS[7] - sender ledger
-- KEYS[8] - sender event stream       KEYS[9] - sender channel
-- ARGV[1] - transfer id  ARGV[2] - outcome: delivered | offered | rejected | accepted | voided
-- ARGV[3] - rejection code or void reason  ARGV[4] - now ms  ARGV[5] - event log bound
-- ARGV[6] - mentor reward asset  ARGV[7] - mentor reward cards
-- ARGV[8] - route of the sender's request (`<conn>/<n>` or ''): the reply it answers
-- Returns {'applied' | 'exists', reply event json, mentor to reward or ''} | {'stale', state, ''}
local tid, outcome, detail = ARGV[1], ARGV[2], ARGV[3]
local now = int_arg(ARGV[4], 'now')
local events_max = events_bound(ARGV[5])
local r_asset, r_cards = ARGV[6], int_arg(ARGV[7], 'reward')

local stored = redis.call('HGET', KEYS[4], tid)
if not stored then return redis.error_reply('ERR giftwire: finalize of unknown transfer ' .. tid) end
local rec = cjson.decode(stored)
local target = {delivered = 'delivered', offered = 'offered', rejected = 'refunded',
                accepted = 'accepted', voided = 'voided'}
local from_state = {delivered = 'escrowed', offered = 'escrowed', rejected = 'escrowed',
                    accepted = 'offered', voided = 'offered'}
if rec.st == target[outcome] then
  return {'exists', rec.ev2 or rec.ev, rec.mentor or ''}
end
if rec.st ~= from_state[outcome] then return {'stale', rec.st, ''} end

local asset, count = rec.asset, rec.count
local room = nil
if rec.room ~= '' then room = rec.room end

local function quota_left()
  return math.max(0, rec.limit - hget_int(KEYS[6], 'sent'))
end

local function refund()
  local pay = rec.cost - rec.free
  if pay > 0 then redis.call('HINCRBY', KEYS[2], asset, I(pay)) end
  if rec.free > 0 then
    redis.call('HINCRBY', KEYS[3], 'promo:' .. asset, I(rec.free))
    redis.call('HINCRBY', KEYS[1], 'free_used', I(-rec.free))
  end
  if rec.cost > count then redis.call('HINCRBY', KEYS[3], 'burn:' .. asset, I(count - rec.cost)) end
  redis.call('HINCRBY', KEYS[3], 'escrow:' .. asset, I(-count))
  -- the quota goes back only while the gift's day is still running
  if redis.call('EXISTS', KEYS[5]) == 1 then
    redis.call('HINCRBY', KEYS[5], 'sent', -1)
    redis.call('HINCRBY', KEYS[5], 'to:' .. rec.to, -1)
  end
  ledger(KEYS[7], tid, asset, pay, 'escrow', 'refund', now)
end

-- the newcomer's first posted gift rewards them and their mentor (paid by promotion)
local function reward_mentor()
  local m = redis.call('HMGET', KEYS[1], 'mentor', 'mentor_rewarded')
  if not m[1] or m[2] == '1' then return end
  local bal = redis.call('HINCRBY', KEYS[2], r_asset, I(r_cards))
  redis.call('HINCRBY', KEYS[3], 'promo:' .. r_asset, I(-r_cards))
  redis.call('HSET', KEYS[1], 'mentor_rewarded', '1')
  ledger(KEYS[7], '$mentor:' .. tid, r_asset, r_cards, 'promo', 'mentor_reward', now)
  emit(KEYS[1], KEYS[8], KEYS[9], {type = 'balance.changed', transfer_id = '$mentor:' .. tid,
       asset = r_asset, delta = r_cards, reason = 'mentor_reward', balance = bal}, events_max)
  rec.mentor = m[1]
end

local ev
if outcome == 'rejected' then
  refund()
  ev = reject_event(tid, rec.gift_id, detail, {asset = asset, balance = hget_int(KEYS[2], asset)})
elseif outcome == 'voided' then
  refund()
  ev = {type = 'gift.voided', transfer_id = tid, gift_id = rec.gift_id, asset = asset,
        count = count, reason = detail, balance = hget_int(KEYS[2], asset),
        quota_left = quota_left()}
elseif outcome == 'accepted' then
  ev = {type = 'gift.accepted', transfer_id = tid, gift_id = rec.gift_id, to = rec.to,
        asset = asset, count = count}
else
  local delivery = 'instant'
  if outcome == 'offered' then delivery = 'pending' end
  ev = {type = 'gift.confirmed', transfer_id = tid, gift_id = rec.gift_id, to = rec.to,
        asset = asset, count = count, cost = rec.cost, free = rec.free, delivery = delivery,
        balance = hget_int(KEYS[2], asset), quota_left = quota_left(), room = room}
end
if outcome == 'delivered' or outcome == 'accepted' then reward_mentor() end
local json = emit(KEYS[1], KEYS[8], KEYS[9], ev, events_max, ARGV[8])
if outcome == 'accepted' or outcome == 'voided' then rec.ev2 = json else rec.ev = json end
rec.st = target[outcome]
redis.call('HSET', KEYS[4], tid, cjson.encode(rec))
return {'applied', json, rec.mentor or ''}
