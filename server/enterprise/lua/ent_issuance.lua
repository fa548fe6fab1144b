-- A batch issuance, step 1, on the issuance's own slot: its id is one issuance of this
-- enterprise. The first call records what it issues (the asset, cards each, the users'
-- fingerprint); the same again finds it, anything else under the id is a conflict. Each
-- user is then credited on their own slot (`grant`, idempotent by `$ent:<enterprise>:<id>`)
-- and recorded in the recipients (SADD, same slot as this record).
-- KEYS[1] - the issuance (server/store/keys.py `issuance`)
-- ARGV[1] - asset   ARGV[2] - cards each   ARGV[3] - the users' fingerprint
-- ARGV[4] - users named   ARGV[5] - kind: brand | tiers   ARGV[6] - now ms
-- Returns {'applied' | 'exists', ''} | {'conflict', ''}
local asset, each, fp = ARGV[1], int_arg(ARGV[2], 'cards'), ARGV[3]
local users, kind = int_arg(ARGV[4], 'users'), enum_arg(ARGV[5], 'kind', {brand = true, tiers = true})
local now = int_arg(ARGV[6], 'now')
if asset == '' or each < 0 or fp == '' or users < 1 then fail('an issuance names cards and users') end

local held = redis.call('HMGET', KEYS[1], 'asset', 'each', 'fp', 'kind')
if held[1] then
  if held[1] ~= asset or held[2] ~= I(each) or held[3] ~= fp or held[4] ~= kind then
    return {'conflict', ''}
  end
  return {'exists', ''}
end
redis.call('HSET', KEYS[1], 'asset', asset, 'each', I(each), 'fp', fp, 'users', I(users),
           'kind', kind, 'at_ms', I(now))
return {'applied', ''}
