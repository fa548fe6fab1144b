-- Create or update a user's profile (`PUT /admin/v1/users/{id}`), on the user's slot. The
-- registration time is set once, on creation, unless given; an id whose data was erased is
-- never registered again (one call: an erasure cannot land between the check and the write).
-- KEYS[1] - profile   KEYS[2] - the user's erased mark
-- ARGV[1] - registration ms (now, or as given)   ARGV[2] - '1' when it was given
-- ARGV[3 ..] - the other fields: name, value, name, value, … (an empty value removes the field:
--             a region or gender no longer known)
-- Returns {'applied', '1' created | '0' updated} | {'rejected', 'user_erased'}
local k_profile, k_erased = KEYS[1], KEYS[2]
local registered, given = int_arg(ARGV[1], 'registered_at_ms'), ARGV[2] == '1'
if #ARGV % 2 ~= 0 then fail('profile fields come in pairs') end
if redis.call('EXISTS', k_erased) == 1 then return {'rejected', 'user_erased'} end
local created = redis.call('HSETNX', k_profile, 'registered_at_ms', I(registered))
if created == 0 and given then redis.call('HSET', k_profile, 'registered_at_ms', I(registered)) end
local sets = {}
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', k_profile, ARGV[i])
  else
    sets[#sets + 1], sets[#sets + 2] = ARGV[i], ARGV[i + 1]
  end
end
if #sets > 0 then redis.call('HSET', k_profile, unpack(sets)) end
return {'applied', I(created)}
