-- A grab, step 2 (the grabber's slot), or an expired envelope's refund (the sender's
-- slot): the cards leave this slot's escrow for the balance, once per record id
-- (`$eg:<group>:<envelope>` / `$er:<group>:<envelope>`). A grab answers the request with
-- `envelope.grabbed` (a retry gets the stored event); a refund is a `balance.changed`.
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system  KEYS[4] - transfers
-- KEYS[5] - ledger  KEYS[6] - events  KEYS[7] - channel
-- ARGV[1] - record id  ARGV[2] - 'grab' | 'refund'  ARGV[3] - group  ARGV[4] - envelope
-- ARGV[5] - asset  ARGV[6] - amount  ARGV[7] - now ms  ARGV[8] - event log bound
-- ARGV[9] - route   ARGV[10] - the bound on any balance (a grab only: a share that would take
-- the grabber past it is refused `balance_full` and waits in escrow, still the member's:
-- grabbing again credits it once there is room; a refund is never refused)
-- Returns {'applied' | 'exists', event JSON} | {'rejected', 'balance_full'}
local k_profile, k_balances, k_system, k_transfers, k_ledger, k_events, k_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local rid, kind = ARGV[1], enum_arg(ARGV[2], 'kind', {grab = true, refund = true})
local group, envelope, asset = ARGV[3], ARGV[4], ARGV[5]
local amount, now = int_arg(ARGV[6], 'amount'), int_arg(ARGV[7], 'now')
local bound, route = events_bound(ARGV[8]), ARGV[9]
if amount < 1 then fail('a credit needs an amount') end

local amount_max = nil
if kind == 'grab' then amount_max = int_arg(ARGV[10], 'amount_max') end

local stored = redis.call('HGET', k_transfers, rid)
if stored then return {'exists', cjson.decode(stored).ev} end
if amount_max and hget_int(k_balances, asset) + amount > amount_max then
  return {'rejected', 'balance_full'}
end
local reason = 'envelope_in'
if kind == 'refund' then reason = 'envelope_refund' end
local balance = credit_from_escrow(k_balances, k_system, k_ledger, rid, asset, amount, now, reason)
local event
if kind == 'grab' then
  event = {type = 'envelope.grabbed', group = group, envelope = envelope, asset = asset,
           share = amount, balance = balance}
else
  event = {type = 'balance.changed', transfer_id = rid, asset = asset, delta = amount,
           reason = 'envelope_refund', balance = balance}
  route = ''
end
local ev = emit(k_profile, k_events, k_channel, event, bound, route)
redis.call('HSET', k_transfers, rid, cjson.encode({st = 'posted', kind = kind, asset = asset,
           count = amount, ev = ev}))
return {'applied', ev}
