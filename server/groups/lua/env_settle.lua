-- A red envelope, step 3, on the sender's slot: the group opened it (the sender hears
-- `envelope.sent`, the reply to the request) or refused it (the cards go back from escrow).
-- Idempotent: a settled record answers with what it stored.
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system  KEYS[4] - transfers
-- KEYS[5] - ledger  KEYS[6] - events  KEYS[7] - channel
-- ARGV[1] - record id  ARGV[2] - envelope id in the group  ARGV[3] - 'open' | 'refuse'
-- ARGV[4] - expires ms (open) or the refusal code  ARGV[5] - now ms  ARGV[6] - event log
-- bound  ARGV[7] - route
-- Returns {'applied' | 'exists', 'open', event JSON} | {'applied' | 'exists', 'refused', code}
local k_profile, k_balances, k_system, k_transfers, k_ledger, k_events, k_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local rid, envelope = ARGV[1], ARGV[2]
local outcome = enum_arg(ARGV[3], 'outcome', {open = true, refuse = true})
local detail, now, bound, route = ARGV[4], int_arg(ARGV[5], 'now'), events_bound(ARGV[6]), ARGV[7]

local stored = redis.call('HGET', k_transfers, rid)
if not stored then fail('no envelope record ' .. rid) end
local rec = cjson.decode(stored)
if rec.st == 'open' then return {'exists', 'open', rec.ev} end
if rec.st == 'refused' then return {'exists', 'refused', rec.code} end
if outcome == 'open' then
  local expires = int_arg(detail, 'expires')
  local event = {type = 'envelope.sent', group = rec.group, envelope = envelope, asset = rec.asset,
                 total = rec.count, shares = rec.shares, balance = hget_int(k_balances, rec.asset),
                 expires_at_ms = expires}
  rec.ev = emit(k_profile, k_events, k_channel, event, bound, route)
  rec.st = 'open'
  redis.call('HSET', k_transfers, rid, cjson.encode(rec))
  return {'applied', 'open', rec.ev}
end
local balance = credit_from_escrow(k_balances, k_system, k_ledger, rid, rec.asset, rec.count, now,
                                   'envelope_refund')
emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = rid, asset = rec.asset,
     delta = rec.count, reason = 'envelope_refund', balance = balance}, bound, '')
rec.st, rec.code = 'refused', detail
redis.call('HSET', k_transfers, rid, cjson.encode(rec))
return {'applied', 'refused', detail}
