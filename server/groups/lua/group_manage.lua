-- The owner or an admin acts on a member, an applicant or a removed member (`approve`
-- readmits one); every action that changes something is logged (a promote of an admin, a
-- demote of a member or an unmute of one not muted is answered, and changes nothing).
-- Admins may not act on the owner or on other admins; only the owner promotes and demotes.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - mutes  KEYS[4] - removed
-- KEYS[5] - applications  KEYS[6] - moderation log  KEYS[7] - channel
-- ARGV[1] - actor  ARGV[2] - action  ARGV[3] - target  ARGV[4] - minutes (mute)
-- ARGV[5] - now ms  ARGV[6] - publish mode  ARGV[7] - log bound
-- Returns {'applied', role now or ''} | {'rejected', code}
local k_profile, k_members, k_mutes, k_removed, k_apps, k_log, k_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local actor, target = ARGV[1], ARGV[3]
local action = enum_arg(ARGV[2], 'action', {promote = true, demote = true, remove = true,
  mute = true, unmute = true, approve = true, reject = true})
local minutes, now = int_arg(ARGV[4], 'minutes'), int_arg(ARGV[5], 'now')
local publish, log_max = publish_command(ARGV[6]), int_arg(ARGV[7], 'log_max')

local p = redis.call('HMGET', k_profile, 'owner', 'capacity', 'members')
if not p[1] then return {'rejected', 'group_unknown'} end
local mine = role_of(k_members, actor)
if not is_manager(mine) then return {'rejected', 'not_group_admin'} end

if action == 'approve' or action == 'reject' then
  -- an application is decided; an approval also readmits a removed member (any entry rule)
  local already = role_of(k_members, target)
  if redis.call('HEXISTS', k_apps, target) == 0 then
    if action == 'approve' and already then return {'applied', already} end  -- a member now
    if action == 'reject' or redis.call('SISMEMBER', k_removed, target) == 0 then
      return {'rejected', 'not_member'}
    end
  end
  if action == 'approve' and not already and tonumber(p[3]) >= tonumber(p[2]) then
    return {'rejected', 'group_full'}  -- the application stays for later
  end
  redis.call('HDEL', k_apps, target)
  if action == 'reject' then
    modlog(k_log, log_max, actor, action, target, '', now)
    return {'applied', ''}
  end
  if already then return {'applied', already} end  -- joined meanwhile: nothing to change
  redis.call('SREM', k_removed, target)
  redis.call('HSET', k_members, target, 'member')
  redis.call('HINCRBY', k_profile, 'members', 1)
  modlog(k_log, log_max, actor, action, target, '', now)
  group_event(k_profile, k_channel, {kind = 'join', user = target, role = 'member'}, publish)
  return {'applied', 'member'}
end

local theirs = role_of(k_members, target)
if not theirs then return {'rejected', 'not_member'} end
if theirs == 'owner' or (theirs == 'admin' and mine ~= 'owner') then
  return {'rejected', 'not_group_admin'}
end
if action == 'promote' or action == 'demote' then
  if mine ~= 'owner' then return {'rejected', 'not_group_admin'} end
  local role = 'member'
  if action == 'promote' then role = 'admin' end
  -- already so (a retry, or a second click): answered, neither logged nor told again
  if theirs == role then return {'applied', role} end
  redis.call('HSET', k_members, target, role)
  modlog(k_log, log_max, actor, action, target, '', now)
  group_event(k_profile, k_channel, {kind = 'role', user = target, role = role}, publish)
  return {'applied', role}
elseif action == 'remove' then
  remove_member(k_profile, k_members, k_mutes, k_removed, k_channel, target, 'admin', publish)
  modlog(k_log, log_max, actor, action, target, '', now)
  return {'applied', ''}
elseif action == 'mute' then
  if minutes < 1 then fail('a mute needs minutes') end
  local until_ms = now + minutes * 60000
  redis.call('HSET', k_mutes, target, I(until_ms))
  modlog(k_log, log_max, actor, action, target, I(minutes) .. ' min', now)
  group_event(k_profile, k_channel, {kind = 'muted', user = target, until_ms = until_ms}, publish)
  return {'applied', theirs}
end
-- unmute (one not muted, or whose mute ran out: answered, neither logged nor told)
local until_ms = tonumber(redis.call('HGET', k_mutes, target) or '0')
redis.call('HDEL', k_mutes, target)
if until_ms <= now then return {'applied', theirs} end
modlog(k_log, log_max, actor, action, target, '', now)
group_event(k_profile, k_channel, {kind = 'muted', user = target, until_ms = 0}, publish)
return {'applied', theirs}
