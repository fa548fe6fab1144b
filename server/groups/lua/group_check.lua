-- Before an in-chat gift is paid: both sides must be members of the group (read only).
-- KEYS[1] - profile  KEYS[2] - members
-- ARGV[1] - sender  ARGV[2] - recipient
-- Returns {'applied', ''} | {'rejected', 'not_group_member'}
local k_profile, k_members = KEYS[1], KEYS[2]
if redis.call('EXISTS', k_profile) == 0
    or redis.call('HEXISTS', k_members, ARGV[1]) == 0
    or redis.call('HEXISTS', k_members, ARGV[2]) == 0 then
  return {'rejected', 'not_group_member'}
end
return {'applied', ''}
