-- Accept, decline or time out a pending offer, on the recipient's slot. The
-- first action to find the offer wins; later ones get the stored outcome, so
-- accept racing timeout has exactly one result.
-- KEYS[1] - recipient profile   KEYS[2] - recipient balances
-- KEYS[3] - recipient system accounts  KEYS[4] - recipient transfer records
-- KEYS[5] - recipient pending offers   KEYS[6] - recipient ledger
-- KEYS[7] - recipient event stream     KEYS[8] - recipient channel
-- ARGV[1] - transfer id  ARGV[2] - 'accept' | 'decline' | 'timeout'  ARGV[3] - now ms
-- ARGV[4] - amount bound ARGV[5] - event log bound
-- Returns {outcome, record, 'new' | 'old'} with outcome 'accepted' | 'voided'
-- (record = the transfer record: `from`, `asset`, `count`, `day`, `reason`, and
-- `ev`, the recipient's event), or {'not_found', '', ''} | {'not_due', '', ''}
local tid, action = ARGV[1], ARGV[2]
local now = int_arg(ARGV[3], 'now')
local events_max = events_bound(ARGV[5])

local stored = redis.call('HGET', KEYS[4], tid)
if not stored then return {'not_found', '', ''} end
local rec = cjson.decode(stored)
if rec.st == 'accepted' or rec.st == 'voided' then return {rec.st, stored, 'old'} end
-- only a held offer can be resolved (a sender's own record is never in KEYS[5])
if rec.st ~= 'offered' or redis.call('HEXISTS', KEYS[5], tid) == 0 then
  return {'not_found', '', ''}
end
if action == 'timeout' and now < rec.exp then return {'not_due', '', ''} end
if action == 'accept' and now >= rec.exp then action = 'timeout' end

local balance = hget_int(KEYS[2], rec.asset)
if action == 'accept' then
  if balance + rec.count > int_arg(ARGV[4], 'amount_max') then action = 'decline' end
end
redis.call('HDEL', KEYS[5], tid)
if action == 'accept' then
  local after = credit_from_escrow(KEYS[2], KEYS[3], KEYS[6], tid, rec.asset, rec.count, now)
  rec.ev = emit(KEYS[1], KEYS[7], KEYS[8], {type = 'gift.received', transfer_id = tid,
       gift_id = rec.gift_id, from = rec.from, asset = rec.asset, count = rec.count,
       balance = after}, events_max)
  rec.st = 'accepted'
else
  rec.st = 'voided'
  if action == 'timeout' then rec.reason = 'timeout' else rec.reason = 'declined' end
  rec.ev = emit(KEYS[1], KEYS[7], KEYS[8], {type = 'gift.voided', transfer_id = tid,
       gift_id = rec.gift_id, asset = rec.asset, count = rec.count, reason = rec.reason},
       events_max)
end
local json = cjson.encode(rec)
redis.call('HSET', KEYS[4], tid, json)
return {rec.st, json, 'new'}
