-- A set redemption, on the user's slot: `sets` complete sets (one card of each set kind a
-- set) are burned and `sets` × the reward granted from mint, in this one call. This is
-- where sets are checked complete. Idempotent by transfer id (`$set:<id>`); the same id
-- with another count of sets is a conflict.
-- KEYS[1] - profile  KEYS[2] - balances  KEYS[3] - system accounts  KEYS[4] - transfer records
-- KEYS[5] - ledger   KEYS[6] - event log KEYS[7] - channel
-- ARGV[1] - transfer id   ARGV[2] - sets   ARGV[3] - reward asset   ARGV[4] - reward per set
-- ARGV[5] - now ms   ARGV[6] - amount bound   ARGV[7] - event log bound
-- ARGV[8 ..] - the set's assets (each once)
-- Returns {'applied' | 'exists', record json {sets, reward: {asset, amount}, balances}} |
--         {'conflict', ''} | {'rejected', 'user_unknown' | 'set_incomplete' | 'amount_too_large'}
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_ledger, k_events, k_channel = KEYS[5], KEYS[6], KEYS[7]
local transfer_id, sets = ARGV[1], int_arg(ARGV[2], 'sets')
local reward_asset, per_set = ARGV[3], int_arg(ARGV[4], 'reward')
local now, amount_max = int_arg(ARGV[5], 'now'), int_arg(ARGV[6], 'amount_max')
local bound = events_bound(ARGV[7])
local kinds = {}
for i = 8, #ARGV do kinds[#kinds + 1] = ARGV[i] end
if sets < 1 or per_set < 1 or reward_asset == '' or #kinds == 0 then
  fail('a redemption redeems sets of at least one kind for a reward')
end

local stored = redis.call('HGET', k_transfers, transfer_id)
if stored then
  if cjson.decode(stored).sets ~= sets then return {'conflict', ''} end
  return {'exists', stored}
end
-- registered, not only a profile (an event to an erased account leaves one with `seq`)
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0 then return {'rejected', 'user_unknown'} end
for _, asset in ipairs(kinds) do
  if hget_int(k_balances, asset) < sets then return {'rejected', 'set_incomplete'} end
end
local reward = sets * per_set
-- the reward's balance after the burn (it may be a set kind itself)
local reward_before = hget_int(k_balances, reward_asset)
for _, asset in ipairs(kinds) do
  if asset == reward_asset then reward_before = reward_before - sets end
end
if reward > amount_max or reward_before + reward > amount_max then
  return {'rejected', 'amount_too_large'}
end

local balances = {}
for _, asset in ipairs(kinds) do
  local after = redis.call('HINCRBY', k_balances, asset, I(-sets))
  redis.call('HINCRBY', k_system, 'burn:' .. asset, I(sets))
  ledger(k_ledger, transfer_id, asset, -sets, 'burn', 'set_redeem', now)
  emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = transfer_id,
       asset = asset, delta = -sets, reason = 'set_redeem', balance = after}, bound, '')
  balances[asset] = after
end
local after = redis.call('HINCRBY', k_balances, reward_asset, I(reward))
redis.call('HINCRBY', k_system, 'mint:' .. reward_asset, I(-reward))
ledger(k_ledger, transfer_id, reward_asset, reward, 'mint', 'set_reward', now)
emit(k_profile, k_events, k_channel, {type = 'balance.changed', transfer_id = transfer_id,
     asset = reward_asset, delta = reward, reason = 'set_reward', balance = after}, bound, '')
balances[reward_asset] = after
local json = cjson.encode({st = 'posted', sets = sets,
                           reward = {asset = reward_asset, amount = reward}, balances = balances})
redis.call('HSET', k_transfers, transfer_id, json)
return {'applied', json}
