-- Step 2 of a task reward, on the user's slot: credit the drawn cards from mint, one
-- ledger line and one `balance.changed` event (reason `task_reward`) per kind. Idempotent
-- by transfer id (`$reward:<id>`): a replay returns the stored record, whatever draw it
-- brings; the record keeps the nonce of the draw it credited, so a caller holding another
-- draw of the same reward knows to give that one back.
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system accounts  KEYS[4] - transfer records
-- KEYS[5] - ledger   KEYS[6] - event log KEYS[7] - channel
-- ARGV[1] - transfer id   ARGV[2] - the draw's nonce   ARGV[3] - now ms   ARGV[4] - amount bound
-- ARGV[5] - event log bound
-- ARGV[6 ..] - the draw: asset, cards, asset, cards, … (each asset once, cards >= 1)
-- Returns {'applied' | 'exists', record json {drawn: {asset: cards}, balances: {asset: after},
--         nonce}} |
--         {'rejected', 'user_unknown' | 'amount_too_large'}
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_ledger, k_events, k_channel = KEYS[5], KEYS[6], KEYS[7]
local transfer_id, nonce, now = ARGV[1], ARGV[2], int_arg(ARGV[3], 'now')
local amount_max, bound = int_arg(ARGV[4], 'amount_max'), events_bound(ARGV[5])
local assets, counts = {}, {}
for i = 6, #ARGV, 2 do
  local n = int_arg(ARGV[i + 1], 'cards')
  if n < 1 then fail('a drawn kind has at least one card') end
  assets[#assets + 1], counts[#counts + 1] = ARGV[i], n
end
if #assets == 0 or nonce == '' then fail('a reward credits at least one card of a draw') end

local stored = redis.call('HGET', k_transfers, transfer_id)
if stored then return {'exists', stored} end
-- registered, not only a profile (an event to an erased account leaves one with `seq`)
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0 then return {'rejected', 'user_unknown'} end
local before = {}
for i, asset in ipairs(assets) do
  before[i] = hget_int(k_balances, asset)
  if before[i] + counts[i] > amount_max then return {'rejected', 'amount_too_large'} end
end

local drawn, balances = {}, {}
for i, asset in ipairs(assets) do
  local after = redis.call('HINCRBY', k_balances, asset, I(counts[i]))
  redis.call('HINCRBY', k_system, 'mint:' .. asset, I(-counts[i]))
  ledger(k_ledger, transfer_id, asset, counts[i], 'mint', 'task_reward', now)
  emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = transfer_id,
       asset = asset, delta = counts[i], reason = 'task_reward', balance = after}, bound, '')
  drawn[asset], balances[asset] = counts[i], after
end
local json = cjson.encode({st = 'posted', drawn = drawn, balances = balances, nonce = nonce})
redis.call('HSET', k_transfers, transfer_id, json)
return {'applied', json}
