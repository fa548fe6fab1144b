-- An in-chat gift, after it settled and was delivered: the group's stream shows it once
-- (idempotent by transfer id).
-- KEYS[1] - profile  KEYS[2] - recorded gifts  KEYS[3] - channel
-- ARGV[1] - transfer id  ARGV[2] - sender  ARGV[3] - recipient  ARGV[4] - asset
-- ARGV[5] - count  ARGV[6] - publish mode  ARGV[7] - kept (s)
-- Returns {'applied' | 'exists', ''} | {'rejected', 'group_unknown'}
local k_profile, k_recorded, k_channel = KEYS[1], KEYS[2], KEYS[3]
local tid, sender, recipient, asset = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count, publish, kept = int_arg(ARGV[5], 'count'), publish_command(ARGV[6]), int_arg(ARGV[7], 'kept')

if redis.call('HEXISTS', k_recorded, tid) == 1 then return {'exists', ''} end
if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
redis.call('HSET', k_recorded, tid, '1')
redis.call('EXPIRE', k_recorded, I(kept))
group_event(k_profile, k_channel, {kind = 'gift', transfer_id = tid, from = sender, to = recipient,
            asset = asset, count = count}, publish)
return {'applied', ''}
