-- Move an asset between a user and one of the system accounts of the user's
-- slot: a grant (from mint), a revocation (to burn) or a reward (from promo).
-- Idempotent by transfer id; the same id with other parameters is a conflict.
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system accounts
-- KEYS[4] - transfer records  KEYS[5] - ledger  KEYS[6] - event stream  KEYS[7] - channel
-- ARGV[1] - transfer id  ARGV[2] - asset  ARGV[3] - signed amount for the user
-- ARGV[4] - system account (mint | burn | promo)  ARGV[5] - reason (grant | revoke | mentor_reward)
-- ARGV[6] - now ms  ARGV[7] - amount bound  ARGV[8] - event log bound
-- Returns {'applied' | 'exists', balance after} | {'rejected', code} | {'conflict', ''}
local tid, asset, account, reason = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local delta = int_arg(ARGV[3], 'delta')
local now = int_arg(ARGV[6], 'now')
local bound = int_arg(ARGV[7], 'amount_max')
local events_max = events_bound(ARGV[8])
local fp = asset .. '|' .. I(delta) .. '|' .. account

local stored = redis.call('HGET', KEYS[4], tid)
if stored then
  local rec = cjson.decode(stored)
  if rec.fp ~= fp then return {'conflict', ''} end
  return {'exists', I(rec.balance)}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'rejected', 'user_unknown'} end
local balance = hget_int(KEYS[2], asset)
if balance + delta < 0 then return {'rejected', 'insufficient_balance'} end
if balance + delta > bound or math.abs(delta) > bound then
  return {'rejected', 'amount_too_large'}
end

local after = redis.call('HINCRBY', KEYS[2], asset, I(delta))
redis.call('HINCRBY', KEYS[3], account .. ':' .. asset, I(-delta))
ledger(KEYS[5], tid, asset, delta, account, reason, now)
emit(KEYS[1], KEYS[6], KEYS[7], {type = 'balance.changed', transfer_id = tid, asset = asset,
     delta = delta, reason = reason, balance = after}, events_max)
redis.call('HSET', KEYS[4], tid, cjson.encode({st = 'posted', fp = fp, balance = after}))
return {'applied', I(after)}
