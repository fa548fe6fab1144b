-- A red-envelope grab's check of the grabber, on the grabber's slot, before the group's slot
-- decides a share: an account banned (by the platform, or by the risk engine) or frozen gets
-- none. Idempotent by the grab request: once
-- passed, a re-run of the same request passes too (its share may be decided already and
-- must reach the grabber), for as long as the envelope can be grabbed; another request of
-- the same grabber is checked afresh.
-- A grab already credited passes too (a resend whose reply was lost: the credit step answers
-- it with the stored event).
-- KEYS[1] - the grabber's profile   KEYS[2] - this grab request's check
-- KEYS[3] - the grabber's transfer records
-- ARGV[1] - now ms   ARGV[2] - the check is kept (ms)   ARGV[3] - the grab's credit record id
-- Returns {'applied'} | {'exists'} | {'rejected', 'account_banned' | 'risk_frozen' | 'risk_banned'}
local k_profile, k_check = KEYS[1], KEYS[2]
local now, ttl = int_arg(ARGV[1], 'now'), int_arg(ARGV[2], 'ttl')
if redis.call('EXISTS', k_check) == 1 then return {'exists'} end
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return {'exists'} end
local risk = redis.call('HMGET', k_profile, 'risk_banned', 'risk_frozen_until', 'banned')
if risk[3] == '1' then return {'rejected', 'account_banned'} end
if risk[1] == '1' then return {'rejected', 'risk_banned'} end
if tonumber(risk[2] or 0) > now then return {'rejected', 'risk_frozen'} end
redis.call('SET', k_check, '1', 'PX', I(ttl))
return {'applied'}
