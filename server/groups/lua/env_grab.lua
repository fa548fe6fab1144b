-- A grab, step 1, on the group's slot: decides the member's share once (idempotent by
-- (envelope, grabber)); every share is ≥ 1 and the K shares sum to exactly the total,
-- whatever the grab order. With k shares and R cards left, the last share is R; any
-- other is uniform on [1, m], m = min(floor(2R/k), R - (k - 1)) ("double the mean": a share
-- averages about R/k, and every later share keeps at least 1). The draw is sha1 of
-- `<secret seed>:<envelope>:<grab number>`: a re-run decides the same, an operator can
-- reproduce it, and no member can foresee it (the seed is never published).
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - the envelope  KEYS[4] - its grabs
-- KEYS[5] - open envelopes  KEYS[6] - the day's counters  KEYS[7] - channel
-- ARGV[1] - envelope id  ARGV[2] - grabber  ARGV[3] - now ms  ARGV[4] - publish mode
-- ARGV[5] - day counters kept (s)
-- Returns {'applied' | 'exists', share, asset, sender} | {'rejected', code}
local k_profile, k_members, k_env, k_grabs, k_envs, k_day, k_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local envelope, user, now = ARGV[1], ARGV[2], int_arg(ARGV[3], 'now')
local publish, day_ttl = publish_command(ARGV[4]), int_arg(ARGV[5], 'day_ttl')

local e = redis.call('HMGET', k_env, 'sender', 'asset', 'left', 'left_shares', 'expires_ms',
                     'state', 'shares', 'seed')
if not e[1] then return {'rejected', 'envelope_unknown'} end
local mine = redis.call('HGET', k_grabs, user)
if mine then return {'exists', mine, e[2], e[1]} end
if not role_of(k_members, user) then return {'rejected', 'not_member'} end
local left, k = tonumber(e[3]), tonumber(e[4])
if e[6] == 'refunded' or (e[6] == 'open' and now >= tonumber(e[5])) then
  return {'rejected', 'envelope_expired'}
end
if k < 1 then return {'rejected', 'envelope_empty'} end
local share = left
if k > 1 then
  local m = math.min(math.floor(2 * left / k), left - (k - 1))
  local j = tonumber(e[7]) - k
  -- 13 hex digits, 52 bits (exact in a Lua double): shares up to any total (amounts stay
  -- below 2^50), not only below 2^32 as 8 digits were
  local h = tonumber(string.sub(redis.sha1hex(e[8] .. ':' .. envelope .. ':' .. I(j)), 1, 13), 16)
  share = 1 + h % math.max(m, 1)
end
redis.call('HSET', k_grabs, user, I(share))
left, k = left - share, k - 1
redis.call('HSET', k_env, 'left', I(left), 'left_shares', I(k))
redis.call('HINCRBY', k_day, 'grabs', 1)
redis.call('EXPIRE', k_day, I(day_ttl))
group_event(k_profile, k_channel, {kind = 'grab', envelope = envelope, user = user, share = share,
            left = left, left_shares = k}, publish)
if k == 0 then
  redis.call('HSET', k_env, 'state', 'done')
  redis.call('ZREM', k_envs, envelope)
  group_event(k_profile, k_channel, {kind = 'envelope_done', envelope = envelope,
              reason = 'grabbed', refunded = 0}, publish)
end
return {'applied', I(share), e[2], e[1]}
