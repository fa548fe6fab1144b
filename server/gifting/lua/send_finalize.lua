-- Step 3 of a gift, on the sender's slot: record what the recipient's side did
-- and tell the sender. A rejection or a void refunds everything step 1 moved
-- (cards, free quota, burned surplus) and gives the daily quota back. The
-- newcomer's first posted gift rewards them and their mentor.
-- Idempotent: a transition already made returns the stored reply.
-- KEYS[1] - sender profile   KEYS[2] - sender balances   KEYS[3] - sender system accounts
-- KEYS[4] - sender transfer records   KEYS[5] - daily counters of the gift's day
-- KEYS[6] - daily counters of today   KEYS[7] - sender ledger
-- KEYS[8] - sender event stream       KEYS[9] - sender channel
-- ARGV[1] - transfer id
-- ARGV[2] - outcome: delivered | offered | rejected | accepted | voided
-- ARGV[3] - detail: the rejection code, the void reason, or 'approver' for a gift offered
--           to a third party's approval (its confirmation says `approval: true`)
-- ARGV[4] - now ms
-- ARGV[5] - mentor reward asset   ARGV[6] - mentor reward cards
-- ARGV[7] - event log bound       ARGV[8] - route of the sender's request ('' if none)
-- Returns {'applied' | 'exists', event json, mentor to reward or ''} |
--         {'stale', the record's state, its latest event json or ''} (the outcome does not
--         follow from that state: the transfer moved past it, or its sender's side lags)
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_gift_day, k_today, k_ledger, k_events, k_channel = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local transfer_id = ARGV[1]
local target = {delivered = 'delivered', offered = 'offered', rejected = 'refunded',
                accepted = 'accepted', voided = 'voided'}
local from_state = {delivered = 'escrowed', offered = 'escrowed', rejected = 'escrowed',
                    accepted = 'offered', voided = 'offered'}
local outcome = enum_arg(ARGV[2], 'outcome', target)
local detail, now = ARGV[3], int_arg(ARGV[4], 'now')
local reward_asset, reward_cards = ARGV[5], int_arg(ARGV[6], 'reward')
local bound, route = events_bound(ARGV[7]), ARGV[8]
if outcome == 'rejected' and not REJECT(detail) then fail('unknown rejection code ' .. detail) end

local stored = redis.call('HGET', k_transfers, transfer_id)
if not stored then fail('finalize of unknown transfer ' .. transfer_id) end
local rec = cjson.decode(stored)
if rec.st == target[outcome] then
  return {'exists', rec.ev2 or rec.ev, rec.mentor or ''}
end
if rec.st ~= from_state[outcome] then return {'stale', rec.st, rec.ev2 or rec.ev or ''} end

local asset, count = rec.asset, rec.count
local room = nil
if rec.room ~= '' then room = rec.room end

local function quota_left()
  return math.max(0, rec.limit - hget_int(k_today, 'sent'))
end

local function refund()
  local pay = rec.cost - rec.free
  if pay > 0 then redis.call('HINCRBY', k_balances, asset, I(pay)) end
  if rec.free > 0 then
    redis.call('HINCRBY', k_system, 'promo:' .. asset, I(rec.free))
    redis.call('HINCRBY', k_profile, 'free_used', I(-rec.free))
  end
  if rec.cost > count then redis.call('HINCRBY', k_system, 'burn:' .. asset, I(count - rec.cost)) end
  redis.call('HINCRBY', k_system, 'escrow:' .. asset, I(-count))
  -- the quota goes back only while the gift's day is still running
  if redis.call('EXISTS', k_gift_day) == 1 then
    redis.call('HINCRBY', k_gift_day, 'sent', -1)
    redis.call('HINCRBY', k_gift_day, 'to:' .. rec.to, -1)
  end
  ledger(k_ledger, transfer_id, asset, pay, 'escrow', 'refund', now)
end

-- the newcomer's first posted gift rewards them and their mentor (paid by promotion). The
-- mark is set by the first posted gift whether a mentor is bound or not (the field's name
-- is older than that): a mentor bound later is refused (`already_gifted`), never rewarded
-- on a later gift.
local function reward_mentor()
  local m = redis.call('HMGET', k_profile, 'mentor', 'mentor_rewarded')
  if m[2] == '1' then return end
  redis.call('HSET', k_profile, 'mentor_rewarded', '1')
  if not m[1] then return end
  local bal = redis.call('HINCRBY', k_balances, reward_asset, I(reward_cards))
  redis.call('HINCRBY', k_system, 'promo:' .. reward_asset, I(-reward_cards))
  ledger(k_ledger, '$mentor:' .. transfer_id, reward_asset, reward_cards, 'promo', 'mentor_reward', now)
  emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = '$mentor:' .. transfer_id,
       asset = reward_asset, delta = reward_cards, reason = 'mentor_reward', balance = bal}, bound, '')
  rec.mentor = m[1]
end

-- the reward first, so the confirmation (the newest event) shows the balance with it
if outcome == 'delivered' or outcome == 'accepted' then reward_mentor() end
local ev
if outcome == 'rejected' then
  refund()
  ev = reject_event(transfer_id, rec.gift_id, detail,
                    {asset = asset, balance = hget_int(k_balances, asset)})
elseif outcome == 'voided' then
  refund()
  ev = {type = 'gift.voided', transfer_id = transfer_id, gift_id = rec.gift_id, to = rec.to,
        asset = asset, count = count, reason = detail, balance = hget_int(k_balances, asset),
        quota_left = quota_left()}
elseif outcome == 'accepted' then
  ev = {type = 'gift.accepted', transfer_id = transfer_id, gift_id = rec.gift_id, to = rec.to,
        asset = asset, count = count}
else
  local delivery = 'instant'
  if outcome == 'offered' then delivery = 'pending' end
  ev = {type = 'gift.confirmed', transfer_id = transfer_id, gift_id = rec.gift_id, to = rec.to,
        asset = asset, count = count, cost = rec.cost, free = rec.free, delivery = delivery,
        balance = hget_int(k_balances, asset), quota_left = quota_left(), room = room}
  if (rec.tier or 0) > 0 then ev.tier = rec.tier end
  if outcome == 'offered' and detail == 'approver' then ev.approval = true end
  ev.channel = rec.ch  -- a partner app's gift says so (nil: left out)
end
local json = emit(k_profile, k_events, k_channel, ev, bound, route)
if outcome == 'accepted' or outcome == 'voided' then rec.ev2 = json else rec.ev = json end
rec.st = target[outcome]
redis.call('HSET', k_transfers, transfer_id, cjson.encode(rec))
return {'applied', json, rec.mentor or ''}
