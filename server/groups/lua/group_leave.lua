-- A member leaves (the owner cannot: the group is theirs); an applicant's leave withdraws
-- their application (an admin's approve finds none).
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - mutes  KEYS[4] - channel
-- KEYS[5] - applications
-- ARGV[1] - user   ARGV[2] - publish mode   ARGV[3] - now ms
-- A mute still running stays with the user (leaving and joining again does not lift it);
-- one that ran out goes.
-- Returns {'applied' | 'exists', ''} | {'rejected', code}
local k_profile, k_members, k_mutes, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_apps = KEYS[5]
local user, publish = ARGV[1], publish_command(ARGV[2])
local now = int_arg(ARGV[3], 'now')

if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
local role = role_of(k_members, user)
if not role then
  if redis.call('HDEL', k_apps, user) == 1 then return {'applied', ''} end
  return {'exists', ''}
end
if role == 'owner' then return {'rejected', 'owner_cannot_leave'} end
redis.call('HDEL', k_members, user)
if tonumber(redis.call('HGET', k_mutes, user) or '0') <= now then redis.call('HDEL', k_mutes, user) end
redis.call('HINCRBY', k_profile, 'members', -1)
group_event(k_profile, k_channel, {kind = 'leave', user = user}, publish)
return {'applied', ''}
