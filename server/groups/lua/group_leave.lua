-- A member leaves (the owner cannot: the group is theirs).
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - mutes  KEYS[4] - channel
-- ARGV[1] - user   ARGV[2] - publish mode
-- Returns {'applied' | 'exists', ''} | {'rejected', code}
local k_profile, k_members, k_mutes, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, publish = ARGV[1], publish_command(ARGV[2])

if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
local role = role_of(k_members, user)
if not role then return {'exists', ''} end
if role == 'owner' then return {'rejected', 'owner_cannot_leave'} end
redis.call('HDEL', k_members, user)
redis.call('HDEL', k_mutes, user)
redis.call('HINCRBY', k_profile, 'members', -1)
group_event(k_profile, k_channel, {kind = 'leave', user = user}, publish)
return {'applied', ''}
