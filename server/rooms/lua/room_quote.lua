-- The live-stream boost: before the sender pays, the room quotes the price of a gift
-- sent in it, on the room's slot. While the streamer's gift wish is open for the gift's
-- asset, the price multiplier is the tier of the room's audience at this moment; else 1.
-- A quote is not stored: the sender's step records the price it charged, and a retried gift
-- is answered from that record (stored quotes, one per gift named in the room, grew with
-- every request, refused ones too). Quotes a release before this one stored are still read.
-- KEYS[1] - room profile   KEYS[2] - quotes stored before (transfer id → `num/den/tier/audience`)
-- KEYS[3] - audience shares   KEYS[4] - their expiries (the audience is summed now: a
--           dead gateway's viewers are not paid for)
-- ARGV[1] - transfer id    ARGV[2] - asset    ARGV[3] - now ms
-- ARGV[4] - tiers `<viewers below or *>:<num>:<den>,…` in ascending order (the default: a
--           room's own `wish_tiers`, set through the admin API, come first)
-- ARGV[5] - (unused: how long a quote was kept, s)
-- Returns {'applied' | 'exists', num, den, tier (0: no wish; -1: no such room), audience}
local k_profile, k_quotes, k_shares, k_expiry = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local transfer_id, asset, now = ARGV[1], ARGV[2], int_arg(ARGV[3], 'now')

local stored = redis.call('HGET', k_quotes, transfer_id)
if stored then
  local num, den, tier, audience = string.match(stored, '^(%d+)/(%d+)/(%d+)/(%d+)$')
  return {'exists', num, den, tier, audience}
end
local p = redis.call('HMGET', k_profile, 'wish_open', 'wish_asset', 'wish_ends_ms', 'streamer',
                    'wish_tiers')
local tiers = {}
for limit, num, den in string.gmatch(p[5] or ARGV[4], '([%d%*]+):(%d+):(%d+)') do
  tiers[#tiers + 1] = {limit = limit, num = tonumber(num), den = tonumber(den)}
end
if #tiers == 0 then fail('no wish tiers') end

-- no such room: tier -1, which the sender's step refuses (stored, like its other refusals)
if not p[4] then return {'applied', '1', '1', '-1', '0'} end
local num, den, tier, audience = 1, 1, 0, 0
local ends = tonumber(p[3] or '0')
if p[1] == '1' and p[2] == asset and (ends == 0 or now < ends) then
  audience = live_audience(k_shares, k_expiry, now)
  for i, t in ipairs(tiers) do
    if t.limit == '*' or audience < tonumber(t.limit) then
      num, den, tier = t.num, t.den, i
      break
    end
  end
end
return {'applied', I(num), I(den), I(tier), I(audience)}
