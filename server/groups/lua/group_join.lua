-- A user asks to join, by the group's entry rule (the gateway read the inputs from the
-- user's own slot: their iron-fan tag for the owner, their fan-club level with the owner).
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - removed  KEYS[4] - applications
-- KEYS[5] - invites  KEYS[6] - channel
-- ARGV[1] - user  ARGV[2] - iron fan of the owner (0|1)  ARGV[3] - fan-club level with the owner
-- ARGV[4] - invite code or ''   ARGV[5] - now ms   ARGV[6] - publish mode
-- Returns {'applied' | 'exists', role} | {'applied', 'applied'} (an application waits)
--       | {'rejected', code}
local k_profile, k_members, k_removed, k_apps, k_invites, k_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user, iron, level, code = ARGV[1], ARGV[2] == '1', int_arg(ARGV[3], 'level'), ARGV[4]
local now, publish = int_arg(ARGV[5], 'now'), publish_command(ARGV[6])

local p = redis.call('HMGET', k_profile, 'owner', 'rule', 'capacity', 'min_level', 'members')
if not p[1] then return {'rejected', 'group_unknown'} end
local role = role_of(k_members, user)
if role then return {'exists', role} end
local rule = p[2]
-- a removed user comes back only through an admin's approval (`group.manage` approve
-- readmits them; in an approval group their join is an application again)
if redis.call('SISMEMBER', k_removed, user) == 1 and rule ~= 'approval' then
  return {'rejected', 'group_removed'}
end
if tonumber(p[5]) >= tonumber(p[3]) then return {'rejected', 'group_full'} end
if rule == 'iron_fan' then
  if not iron then return {'rejected', 'not_eligible'} end
elseif rule == 'level' then
  if level < tonumber(p[4]) then return {'rejected', 'not_eligible'} end
elseif rule == 'invite' then
  local inv = code ~= '' and redis.call('HGET', k_invites, code)
  if not inv then return {'rejected', 'invite_invalid'} end
  local uses, expires = string.match(inv, '^(%d+):(%d+)$')
  if tonumber(uses) < 1 or now >= tonumber(expires) then return {'rejected', 'invite_invalid'} end
  if tonumber(uses) == 1 then
    redis.call('HDEL', k_invites, code)
  else
    redis.call('HSET', k_invites, code, I(tonumber(uses) - 1) .. ':' .. expires)
  end
elseif rule == 'approval' then
  redis.call('HSETNX', k_apps, user, I(now))
  return {'applied', 'applied'}
else
  fail('unknown entry rule ' .. tostring(rule))
end
redis.call('HSET', k_members, user, 'member')
redis.call('HINCRBY', k_profile, 'members', 1)
group_event(k_profile, k_channel, {kind = 'join', user = user, role = 'member'}, publish)
return {'applied', 'member'}
