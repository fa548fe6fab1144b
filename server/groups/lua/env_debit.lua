-- A red envelope, step 1, on the sender's slot: the cards leave the sender's balance for
-- this slot's escrow, idempotent by the envelope's record `$es:<envelope id>` (the same id
-- with other parameters is a conflict).
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system accounts  KEYS[4] - transfers
-- KEYS[5] - ledger
-- ARGV[1] - record id  ARGV[2] - group  ARGV[3] - asset  ARGV[4] - total  ARGV[5] - shares
-- ARGV[6] - now ms
-- Returns {'applied' | 'exists', record JSON} | {'rejected', code} | {'conflict', ''}
local k_profile, k_balances, k_system, k_transfers, k_ledger = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5]
local rid, group, asset = ARGV[1], ARGV[2], ARGV[3]
local total, shares, now = int_arg(ARGV[4], 'total'), int_arg(ARGV[5], 'shares'),
  int_arg(ARGV[6], 'now')
local fp = group .. '|' .. asset .. '|' .. I(total) .. '|' .. I(shares)

local stored = redis.call('HGET', k_transfers, rid)
if stored then
  if cjson.decode(stored).fp ~= fp then return {'conflict', ''} end
  return {'exists', stored}
end
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0 then
  return {'rejected', 'not_registered'}
end
local risk = redis.call('HMGET', k_profile, 'risk_banned', 'risk_frozen_until', 'risk_restricted_until',
                       'banned')
if risk[4] == '1' then return {'rejected', 'account_banned'} end  -- the platform's own ban
-- the risk engine's decisions, re-checked here (a request queued before one reached the
-- gateway): a red envelope is gifting
if risk[1] == '1' then return {'rejected', 'risk_banned'} end
if tonumber(risk[2] or '0') > now then return {'rejected', 'risk_frozen'} end
if tonumber(risk[3] or '0') > now then return {'rejected', 'risk_restricted'} end
if hget_int(k_balances, asset) < total then return {'rejected', 'envelope_insufficient'} end
redis.call('HINCRBY', k_balances, asset, I(-total))
redis.call('HINCRBY', k_system, 'escrow:' .. asset, I(total))
ledger(k_ledger, rid, asset, -total, 'escrow', 'envelope_out', now)
local rec = cjson.encode({st = 'escrowed', fp = fp, group = group, asset = asset, count = total,
                          shares = shares})
redis.call('HSET', k_transfers, rid, rec)
return {'applied', rec}
