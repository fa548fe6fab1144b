-- A user's erasure (GDPR, SPEC table 5), on the user's slot: what giftwire holds about the
-- person goes (profile, follows, blocks, likes, fan-club levels and tasks, popularity
-- state and card uses, the risk engine's recent actions, the event log); what the ledger
-- must keep stays: the ledger lines, the transfer records and this slot's system accounts
-- (every asset still sums to zero), and a profile with only `erased_at_ms` and `banned`,
-- so the account is unknown to every rule from now on. Only an account that holds
-- nothing: every balance zero, no gift of theirs in escrow, no offer waiting for them.
-- Idempotent: erasing again answers the first erasure's time.
-- KEYS[1] - profile   KEYS[2] - balances   KEYS[3] - system accounts   KEYS[4] - offers
-- KEYS[5 ..] - the keys erased whole
-- ARGV[1] - now ms
-- Returns {'applied' | 'exists', erased at ms} |
--         {'rejected', 'user_unknown' | 'balance_not_zero' | 'gifts_in_flight'}
local k_profile, k_balances, k_system, k_offers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = int_arg(ARGV[1], 'now')

local done = redis.call('HGET', k_profile, 'erased_at_ms')
if done then return {'exists', done} end
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0 then
  return {'rejected', 'user_unknown'}
end
local balances = redis.call('HVALS', k_balances)
for _, n in ipairs(balances) do
  if tonumber(n) ~= 0 then return {'rejected', 'balance_not_zero'} end
end
local system = redis.call('HGETALL', k_system)
for i = 1, #system, 2 do
  if string.sub(system[i], 1, 7) == 'escrow:' and tonumber(system[i + 1]) ~= 0 then
    return {'rejected', 'gifts_in_flight'}
  end
end
if redis.call('HLEN', k_offers) > 0 then return {'rejected', 'gifts_in_flight'} end

redis.call('DEL', k_profile, k_balances, k_offers, unpack(KEYS, 5))
redis.call('HSET', k_profile, 'erased_at_ms', I(now), 'banned', '1')
return {'applied', I(now)}
