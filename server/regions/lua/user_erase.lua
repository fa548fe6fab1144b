-- A user's erasure (GDPR, SPEC table 5), on the user's slot: what giftwire holds about the
-- person goes (profile, follows, blocks, likes, fan-club levels and tasks, popularity
-- state and card uses, the risk engine's recent actions, the event log); what the ledger
-- must keep stays: the ledger lines, the transfer records and this slot's system accounts
-- (every asset still sums to zero). The id is marked erased: never registered again, and
-- every rule finds no user. Only an account that holds nothing: every balance zero and no
-- offer waiting for them (a gift of theirs still settling finishes as any other: a refund
-- comes back to the erased account, for an operator to revoke).
-- Idempotent: erasing again answers the first erasure's time.
-- KEYS[1] - profile   KEYS[2] - balances   KEYS[3] - offers   KEYS[4] - the erased mark
-- KEYS[5 ..] - the keys erased whole
-- ARGV[1] - now ms
-- Returns {'applied' | 'exists', erased at ms} |
--         {'rejected', 'user_unknown' | 'balance_not_zero' | 'gifts_in_flight'}
local k_profile, k_balances, k_offers, k_erased = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = int_arg(ARGV[1], 'now')

local done = redis.call('GET', k_erased)
if done then return {'exists', done} end
if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 0 then
  return {'rejected', 'user_unknown'}
end
for _, n in ipairs(redis.call('HVALS', k_balances)) do
  if tonumber(n) ~= 0 then return {'rejected', 'balance_not_zero'} end
end
if redis.call('HLEN', k_offers) > 0 then return {'rejected', 'gifts_in_flight'} end

redis.call('DEL', k_profile, k_balances, k_offers, unpack(KEYS, 5))
redis.call('SET', k_erased, I(now))
return {'applied', I(now)}
