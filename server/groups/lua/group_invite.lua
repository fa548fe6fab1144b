-- The owner or an admin makes an invite code: `uses` joins before `expires`. Expired codes
-- are pruned here; a group keeps at most `max` codes.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - invites
-- ARGV[1] - actor  ARGV[2] - code  ARGV[3] - uses  ARGV[4] - expires ms  ARGV[5] - now ms
-- ARGV[6] - max codes
-- Returns {'applied', ''} | {'rejected', code}
local k_profile, k_members, k_invites = KEYS[1], KEYS[2], KEYS[3]
local actor, code, uses = ARGV[1], ARGV[2], int_arg(ARGV[3], 'uses')
local expires, now, max = int_arg(ARGV[4], 'expires'), int_arg(ARGV[5], 'now'), int_arg(ARGV[6], 'max')

if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
if not is_manager(role_of(k_members, actor)) then return {'rejected', 'not_group_admin'} end
local all = redis.call('HGETALL', k_invites)
for i = 1, #all, 2 do
  local _, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if now >= tonumber(exp) then redis.call('HDEL', k_invites, all[i]) end
end
if redis.call('HLEN', k_invites) >= max then return {'rejected', 'too_many_invites'} end
redis.call('HSET', k_invites, code, I(uses) .. ':' .. I(expires))
return {'applied', ''}
