-- An envelope's time is up (the workers' sweep), on the group's slot: what is left is
-- taken out for its sender, once. Idempotent: a re-run answers the same remainder.
-- KEYS[1] - profile  KEYS[2] - the envelope  KEYS[3] - open envelopes  KEYS[4] - channel
-- ARGV[1] - envelope id  ARGV[2] - now ms  ARGV[3] - publish mode
-- Returns {'applied' | 'exists', remainder, sender, asset} | {'not_due', ''} |
--         {'not_found', ''}
local k_profile, k_env, k_envs, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local envelope, now, publish = ARGV[1], int_arg(ARGV[2], 'now'), publish_command(ARGV[3])

local e = redis.call('HMGET', k_env, 'sender', 'asset', 'left', 'expires_ms', 'state', 'refunded')
if not e[1] then
  redis.call('ZREM', k_envs, envelope)
  return {'not_found', ''}
end
if e[5] == 'refunded' then return {'exists', e[6], e[1], e[2]} end
if e[5] == 'done' then return {'exists', '0', e[1], e[2]} end
if now < tonumber(e[4]) then return {'not_due', ''} end
redis.call('HSET', k_env, 'state', 'refunded', 'refunded', e[3], 'left', '0')
redis.call('ZREM', k_envs, envelope)
group_event(k_profile, k_channel, {kind = 'envelope_done', envelope = envelope, reason = 'expired',
            refunded = tonumber(e[3])}, publish)
return {'applied', e[3], e[1], e[2]}
