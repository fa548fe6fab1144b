-- Create or update a user's profile (`PUT /admin/v1/users/{id}`), on the user's slot. The
-- registration time is set once, on creation, unless given; an id whose data was erased is
-- never registered again (one call: an erasure cannot land between the check and the write).
-- KEYS[1] - profile   KEYS[2] - the user's erased mark
-- ARGV[1] - registration ms (now, or as given)   ARGV[2] - '1' when it was given
-- ARGV[3 ..] - the other fields: name, value, name, value, …
-- Returns {'applied', '1' created | '0' updated} | {'rejected', 'user_erased'}
local k_profile, k_erased = KEYS[1], KEYS[2]
local registered, given = int_arg(ARGV[1], 'registered_at_ms'), ARGV[2] == '1'
if #ARGV % 2 ~= 0 then fail('profile fields come in pairs') end
if redis.call('EXISTS', k_erased) == 1 then return {'rejected', 'user_erased'} end
local created = redis.call('HSETNX', k_profile, 'registered_at_ms', I(registered))
if created == 0 and given then redis.call('HSET', k_profile, 'registered_at_ms', I(registered)) end
if #ARGV > 2 then redis.call('HSET', k_profile, unpack(ARGV, 3)) end
return {'applied', I(created)}
