-- Move an asset between a user and one of the system accounts of the user's
-- slot: a grant (from mint), a revocation (to burn) or a reward (from promo).
-- Idempotent by transfer id; the same id with other parameters is a conflict.
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system accounts
-- KEYS[4] - transfer records  KEYS[5] - ledger  KEYS[6] - event stream  KEYS[7] - channel
-- KEYS[8] - the user's erased mark (a revocation still reaches an erased account: a refund
--           that came back to it after the erasure is taken out this way)
-- ARGV[1] - transfer id   ARGV[2] - asset   ARGV[3] - signed amount for the user
-- ARGV[4] - system account: mint | burn | promo
-- ARGV[5] - reason: grant | revoke | mentor_reward | enterprise (an enterprise's issuance)
-- ARGV[6] - now ms   ARGV[7] - amount bound   ARGV[8] - event log bound
-- Returns {'applied' | 'exists', balance after} | {'rejected', code} | {'conflict', ''}
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_ledger, k_events, k_channel, k_erased = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local transfer_id, asset, delta = ARGV[1], ARGV[2], int_arg(ARGV[3], 'delta')
local account = enum_arg(ARGV[4], 'system account', {mint = true, burn = true, promo = true})
local reason = enum_arg(ARGV[5], 'reason', {grant = true, revoke = true, mentor_reward = true,
                                            enterprise = true})
local now, amount_max = int_arg(ARGV[6], 'now'), int_arg(ARGV[7], 'amount_max')
local bound = events_bound(ARGV[8])
local fingerprint = asset .. '|' .. I(delta) .. '|' .. account

local stored = redis.call('HGET', k_transfers, transfer_id)
if stored then
  local rec = cjson.decode(stored)
  if rec.fp ~= fingerprint then return {'conflict', ''} end
  return {'exists', I(rec.balance)}
end
-- registered, not only a profile (an event to an erased account leaves one with `seq`)
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0
    and not (delta < 0 and redis.call('EXISTS', k_erased) == 1) then
  return {'rejected', 'user_unknown'}
end
local balance = hget_int(k_balances, asset)
if balance + delta < 0 then return {'rejected', 'insufficient_balance'} end
-- a revocation is never held back by the bound (a balance past it, from refunds, can shrink)
if (delta > 0 and balance + delta > amount_max) or math.abs(delta) > amount_max then
  return {'rejected', 'amount_too_large'}
end

local after = redis.call('HINCRBY', k_balances, asset, I(delta))
redis.call('HINCRBY', k_system, account .. ':' .. asset, I(-delta))
ledger(k_ledger, transfer_id, asset, delta, account, reason, now)
emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = transfer_id,
     asset = asset, delta = delta, reason = reason, balance = after}, bound, '')
redis.call('HSET', k_transfers, transfer_id, cjson.encode({st = 'posted', fp = fingerprint, balance = after}))
return {'applied', I(after)}
