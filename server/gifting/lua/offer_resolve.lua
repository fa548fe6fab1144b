-- Accept, decline or time out a pending offer, on the recipient's slot. The
-- first action to find the offer wins; every later one is answered from the
-- stored outcome, so accept racing decline or timeout has exactly one result and
-- each request still gets exactly one reply.
-- KEYS[1] - recipient profile   KEYS[2] - recipient balances
-- KEYS[3] - recipient system accounts  KEYS[4] - recipient transfer records
-- KEYS[5] - recipient pending offers   KEYS[6] - recipient ledger
-- KEYS[7] - recipient event stream     KEYS[8] - recipient channel
-- ARGV[1] - transfer id  ARGV[3] - now ms
-- ARGV[2] - 'accept' | 'decline' (the recipient), 'approve' | 'deny' (a third party, for an
--           offer held for approval: its recipient cannot resolve it) or 'timeout' 
-- ARGV[4] - amount bound ARGV[5] - event log bound
-- ARGV[6] - route of the request (`<conn>/<n>` or ''): the new event is its reply
-- Returns {status, outcome, record, code}:
--   'applied'   this call resolved the offer (outcome 'accepted' | 'voided'); when `code`
--               is set (an accept or decline after the deadline: 'offer_expired') the
--               event went out unrouted and the request is answered with that rejection
--   'exists'    resolved before by the same action: the stored event is the reply
--   'lost'      resolved before by another action: `code` says how (offer_accepted,
--               offer_declined, offer_expired)
--   'rejected'  not resolved (the offer stays): `code`, e.g. accept_balance_full
--   'not_found' no offer with this id for this user;  'not_due' a timeout too early
-- `record` is the transfer record (`from`, `asset`, `count`, `day`, `reason`, `ev`).
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_offers, k_ledger, k_events, k_channel = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local tid = ARGV[1]
local action = enum_arg(ARGV[2], 'offer action', {accept = true, decline = true, timeout = true,
                                                  approve = true, deny = true})
local by_approver = action == 'approve' or action == 'deny'
-- an approver's word is the recipient's accept or decline, for an offer held for approval
if action == 'approve' then action = 'accept' elseif action == 'deny' then action = 'decline' end
local now = int_arg(ARGV[3], 'now')
local amount_max = int_arg(ARGV[4], 'amount_max')
local events_max = events_bound(ARGV[5])
local route = ARGV[6]

local stored = redis.call('HGET', k_transfers, tid)
if not stored then return {'not_found', '', '', ''} end
local rec = cjson.decode(stored)
-- only a gift's record is an offer (other records share the hash: a `$` id's may be a number)
if type(rec) ~= 'table' or not rec.from then return {'not_found', '', '', ''} end

-- how the offer ended, in the words of a rejection code
local function ended_by()
  if rec.st == 'accepted' then return 'offer_accepted' end
  if rec.reason == 'timeout' then return 'offer_expired' end
  if rec.reason == 'denied' then return 'approval_denied' end
  return 'offer_declined'
end
local declined_as = 'declined'
if by_approver then declined_as = 'denied' end

-- an approver speaks only of a gift held for approval, settled or not
if by_approver and rec.by ~= 'approver' then return {'not_found', '', '', ''} end
if rec.st == 'accepted' or rec.st == 'voided' then
  local same = (action == 'accept' and rec.st == 'accepted')
      or (action == 'decline' and rec.st == 'voided' and rec.reason == declined_as)
  if same then return {'exists', rec.st, stored, ''} end
  return {'lost', rec.st, stored, ended_by()}
end
-- only a held offer can be resolved (a sender's own record is never in k_offers)
if rec.st ~= 'offered' or redis.call('HEXISTS', k_offers, tid) == 0 then
  return {'not_found', '', '', ''}
end
if action == 'timeout' and now < rec.exp then return {'not_due', '', '', ''} end

local code = ''
if action ~= 'timeout' and now >= rec.exp then
  -- too late (the sweep had not come yet): the offer times out now, and the accept or
  -- decline is told so, as it would be once the sweep had run
  action, code, route = 'timeout', 'offer_expired', ''
end
-- an offer held for approval is the approver's to resolve, and only such an offer is
-- (past its deadline, any action above timed it out)
if action ~= 'timeout' and by_approver ~= (rec.by == 'approver') then
  if by_approver then return {'not_found', '', '', ''} end
  return {'rejected', '', '', 'approval_pending'}
end
if action == 'accept' then
  -- banned since the offer was made (by the platform or the risk engine): no cards reach the
  -- account; the offer waits for a decline or its timeout, which give them back
  local b = redis.call('HMGET', k_profile, 'banned', 'risk_banned')
  if b[1] == '1' or b[2] == '1' then return {'rejected', '', '', 'recipient_banned'} end
end
if action == 'accept' and hget_int(k_balances, rec.asset) + rec.count > amount_max then
  return {'rejected', '', '', 'accept_balance_full'}
end

redis.call('HDEL', k_offers, tid)
if action == 'accept' then
  local after = credit_from_escrow(k_balances, k_system, k_ledger, tid, rec.asset, rec.count, now)
  rec.ev = emit(k_profile, k_events, k_channel, {type = 'gift.received', transfer_id = tid,
       gift_id = rec.gift_id, from = rec.from, asset = rec.asset, count = rec.count,
       room = rec.room, balance = after, channel = rec.ch}, events_max, route)
  rec.st = 'accepted'
else
  rec.st = 'voided'
  if action == 'timeout' then rec.reason = 'timeout' else rec.reason = declined_as end
  rec.ev = emit(k_profile, k_events, k_channel, {type = 'gift.voided', transfer_id = tid,
       gift_id = rec.gift_id, asset = rec.asset, count = rec.count, reason = rec.reason},
       events_max, route)
end
local json = cjson.encode(rec)
redis.call('HSET', k_transfers, tid, json)
return {'applied', rec.st, json, code}
