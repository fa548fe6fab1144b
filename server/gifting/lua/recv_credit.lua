-- Step 2 of a gift, on the recipient's slot: credit the cards from escrow, or
-- hold them as an offer when the recipient confirms gifts, or reject (the
-- sender's step 3 then refunds). Idempotent by transfer id.
-- KEYS[1] - recipient profile       KEYS[2] - recipient balances
-- KEYS[3] - recipient system accounts   KEYS[4] - recipient transfer records
-- KEYS[5] - users the recipient blocked KEYS[6] - recipient pending offers
-- KEYS[7] - recipient ledger        KEYS[8] - recipient event stream
-- KEYS[9] - recipient channel
-- ARGV[1] - transfer id   ARGV[2] - gift id   ARGV[3] - sender
-- ARGV[4] - asset         ARGV[5] - count     ARGV[6] - room or ''
-- ARGV[7] - the sender's day key of the gift (restored on a void)   ARGV[8] - now ms
-- ARGV[9] - offer timeout ms    ARGV[10] - pending offers bound   ARGV[11] - amount bound
-- ARGV[12] - event log bound
-- ARGV[13] - mode: 'credit', or 'void' when an operator gives up on the gift (a dead
--            letter): unless this side already decided, it is rejected `operator_voided`
-- ARGV[14] - the partner app's channel the gift came from, or '' (shown in the events)
-- ARGV[15] - the regions whose users' gifts wait for a third party's approval,
--            `;<region>=<rule>;…;` ('' none; rule `*` or `<sender gender>><recipient gender>`)
-- ARGV[16] - the sender's gender, or ''   ARGV[17] - how long an approval may take, ms
-- Returns {'applied' | 'exists', outcome, detail, held by}: outcome 'delivered' (detail ''),
-- 'offered' (detail: expiry ms; held by 'approver' when a third party decides, else '') or
-- 'rejected' (detail: the code)
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_blocks, k_offers, k_ledger, k_events, k_channel = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local transfer_id, gift_id, sender = ARGV[1], ARGV[2], ARGV[3]
local asset, count, room = ARGV[4], int_arg(ARGV[5], 'count'), ARGV[6]
local gift_day, now = ARGV[7], int_arg(ARGV[8], 'now')
local offer_ms, offers_max = int_arg(ARGV[9], 'offer_timeout'), int_arg(ARGV[10], 'offers_max')
local amount_max, bound = int_arg(ARGV[11], 'amount_max'), events_bound(ARGV[12])
local mode = enum_arg(ARGV[13], 'mode', {credit = true, void = true})
local channel = ARGV[14]
if channel == '' then channel = nil end
local approvals, sender_gender = ARGV[15], ARGV[16]
local approval_ms = int_arg(ARGV[17], 'approval_timeout')

local stored = redis.call('HGET', k_transfers, transfer_id)
if stored then
  local rec = cjson.decode(stored)
  if rec.st == 'offered' or rec.st == 'accepted' or rec.st == 'voided' then
    return {'exists', 'offered', I(rec.exp), rec.by or ''}
  end
  return {'exists', rec.st, rec.code or ''}
end

local function reject(code)
  redis.call('HSET', k_transfers, transfer_id, cjson.encode({st = 'rejected', code = code, from = sender}))
  return {'applied', 'rejected', code}
end

if mode == 'void' then return reject('operator_voided') end
local p = redis.call('HMGET', k_profile, 'registered_at_ms', 'banned', 'confirm', 'region', 'gender',
                    'risk_banned')
if not p[1] then return reject('recipient_unknown') end
-- the platform's ban or the risk engine's (permanent): either way no cards reach the account
if p[2] == '1' or p[6] == '1' then return reject('recipient_banned') end
if redis.call('SISMEMBER', k_blocks, sender) == 1 then return reject('blocked') end
if hget_int(k_balances, asset) + count > amount_max then return reject('amount_too_large') end

local room_or_nil = nil
if room ~= '' then room_or_nil = room end
-- where the recipient's region needs a third party's approval (SPEC table 5), the gift
-- waits for it as an offer only an approver resolves
local approval = nil
if p[4] and approvals ~= '' then
  local _, e = string.find(approvals, ';' .. p[4] .. '=', 1, true)
  if e then
    local rule = string.match(approvals, '^([^;]*)', e + 1)
    if rule == '*' or rule == sender_gender .. '>' .. (p[5] or '') then approval = true end
  end
end
if p[3] == '1' or approval then
  if redis.call('HLEN', k_offers) >= offers_max then return reject('offers_full') end
  local exp = now + offer_ms
  if approval then exp = now + approval_ms end
  local json = emit(k_profile, k_events, k_channel, {type = 'gift.offer', transfer_id = transfer_id,
       gift_id = gift_id, from = sender, asset = asset, count = count, room = room_or_nil,
       expires_at_ms = exp, channel = channel, approval = approval}, bound, '')
  redis.call('HSET', k_offers, transfer_id, json)
  local by = nil
  if approval then by = 'approver' end
  redis.call('HSET', k_transfers, transfer_id, cjson.encode({st = 'offered', from = sender, exp = exp,
             asset = asset, count = count, gift_id = gift_id, day = gift_day, ch = channel,
             by = by, room = room_or_nil}))
  return {'applied', 'offered', I(exp), by or ''}
end

local after = credit_from_escrow(k_balances, k_system, k_ledger, transfer_id, asset, count, now)
emit(k_profile, k_events, k_channel, {type = 'gift.received', transfer_id = transfer_id,
     gift_id = gift_id, from = sender, asset = asset, count = count, room = room_or_nil,
     balance = after, channel = channel}, bound, '')
redis.call('HSET', k_transfers, transfer_id, cjson.encode({st = 'delivered', from = sender}))
return {'applied', 'delivered', ''}
