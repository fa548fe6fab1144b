-- A batch issuance, step 1, on the issuance's own slot: its id is one issuance of this
-- enterprise, and its plan (each user's cards) is fixed by the first call. The same call
-- again finds the plan and answers it (a replay completes the issuance: users credited
-- since are skipped by their grants' ids); another plan under the id is a conflict. Each
-- user is then credited on their own slot (`grant`, idempotent by `$ent:<enterprise>:<id>`)
-- and recorded in the recipients; once all are, `complete` is set (ARGV[1] = 'complete').
-- KEYS[1] - the issuance (server/store/keys.py `issuance`)   KEYS[2] - its plan: user → cards
-- ARGV[1] - 'plan' | 'complete'   ARGV[2] - asset   ARGV[3] - kind: brand | tiers
-- ARGV[4] - the plan's fingerprint   ARGV[5] - now ms   ARGV[6 ..] - user, cards, user, cards, …
-- Returns {'applied' | 'exists', {user, cards, …}} (the plan, nested: up to 10,000 users
--         are more values than Lua can `unpack`) | {'conflict'} | {'applied'} (complete)
local k_issuance, k_plan = KEYS[1], KEYS[2]
local action = enum_arg(ARGV[1], 'action', {plan = true, complete = true})
if action == 'complete' then
  redis.call('HSET', k_issuance, 'complete', '1')
  return {'applied'}
end
local asset, kind, fp = ARGV[2], enum_arg(ARGV[3], 'kind', {brand = true, tiers = true}), ARGV[4]
local now = int_arg(ARGV[5], 'now')
if asset == '' or fp == '' or #ARGV < 7 or #ARGV % 2 ~= 1 then
  fail('an issuance plans cards for users')
end

local held = redis.call('HMGET', k_issuance, 'asset', 'fp', 'kind')
if held[1] then
  if held[1] ~= asset or held[2] ~= fp or held[3] ~= kind then return {'conflict'} end
  return {'exists', redis.call('HGETALL', k_plan)}
end
local users = 0
for i = 6, #ARGV, 2 do
  local cards = int_arg(ARGV[i + 1], 'cards')
  if cards > 0 then
    redis.call('HSET', k_plan, ARGV[i], I(cards))
    users = users + 1
  end
end
redis.call('HSET', k_issuance, 'asset', asset, 'fp', fp, 'kind', kind, 'users', I((#ARGV - 5) / 2),
           'planned', I(users), 'at_ms', I(now))
return {'applied', redis.call('HGETALL', k_plan)}
