-- A red envelope, step 2, on the group's slot: the envelope opens for `shares` grabbers
-- (idempotent by its id `<sender>:<envelope id>`). The sender must be a member.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - the envelope  KEYS[4] - open envelopes
-- KEYS[5] - the day's counters  KEYS[6] - channel  KEYS[7] - the day's envelopes
-- ARGV[1] - envelope id  ARGV[2] - sender  ARGV[3] - asset  ARGV[4] - total  ARGV[5] - shares
-- ARGV[6] - now ms  ARGV[7] - expires ms  ARGV[8] - publish mode  ARGV[9] - day counters
-- kept (s)  ARGV[10] - open envelopes at most  ARGV[11] - a secret random seed for the
-- shares (kept on the envelope, never published: nobody can foresee a share)
-- Returns {'applied' | 'exists', expires ms} | {'rejected', code}
local k_profile, k_members, k_env, k_envs, k_day, k_channel, k_day_envs = KEYS[1], KEYS[2],
  KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local envelope, sender, asset = ARGV[1], ARGV[2], ARGV[3]
local total, shares = int_arg(ARGV[4], 'total'), int_arg(ARGV[5], 'shares')
local now, expires, publish = int_arg(ARGV[6], 'now'), int_arg(ARGV[7], 'expires'),
  publish_command(ARGV[8])
local day_ttl, max, seed = int_arg(ARGV[9], 'day_ttl'), int_arg(ARGV[10], 'max'), ARGV[11]
if #seed < 16 then fail('the shares need a seed') end
if shares < 1 or shares > total then fail('shares must be in [1, total]') end

local done = redis.call('HMGET', k_env, 'expires_ms', 'state')
if done[2] == 'void' then return {'rejected', 'settlement_failed'} end  -- an operator gave up
if done[1] then return {'exists', done[1]} end
if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
if not role_of(k_members, sender) then return {'rejected', 'not_member'} end
if redis.call('ZCARD', k_envs) >= max then return {'rejected', 'too_many_envelopes'} end
redis.call('HSET', k_env, 'sender', sender, 'asset', asset, 'total', I(total), 'shares', I(shares),
           'left', I(total), 'left_shares', I(shares), 'expires_ms', I(expires),
           'created_ms', I(now), 'state', 'open', 'seed', seed)
redis.call('ZADD', k_envs, I(expires), envelope)
redis.call('HINCRBY', k_day, 'envelopes', 1)
redis.call('EXPIRE', k_day, I(day_ttl))
redis.call('SADD', k_day_envs, envelope)  -- the day's claim rate counts its envelopes' grabs
redis.call('EXPIRE', k_day_envs, I(day_ttl))
group_event(k_profile, k_channel, {kind = 'envelope', envelope = envelope, from = sender,
            asset = asset, total = total, shares = shares, expires_at_ms = expires}, publish)
return {'applied', I(expires)}
