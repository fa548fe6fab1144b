-- A card use, step 2, on the content hash's own slot: the first account to boost content
-- with this hash owns it; a re-upload by another account is refused. The owner's uses of
-- the hash are kept with it, so a cancel before the start (or an operator's void of a use
-- that never settled, its window taken away) gives the hash back once none of its uses is
-- left (`release`).
-- KEYS[1] - the hash's owner   KEYS[2] - the owner's uses of the hash (a set)
-- ARGV[1] - the user           ARGV[2] - the use id   ARGV[3] - 'claim' | 'release'
-- Returns {'applied' | 'exists', ''} | {'rejected', 'content_taken'}
local k_owner, k_uses = KEYS[1], KEYS[2]
local user, use = ARGV[1], ARGV[2]
local action = enum_arg(ARGV[3], 'action', {claim = true, release = true})
local owner = redis.call('GET', k_owner)
if action == 'release' then
  if owner ~= user or redis.call('SREM', k_uses, use) == 0 then return {'exists', ''} end
  if redis.call('SCARD', k_uses) == 0 then redis.call('DEL', k_owner) end
  return {'applied', ''}
end
if owner and owner ~= user then return {'rejected', 'content_taken'} end
if owner and redis.call('EXISTS', k_uses) == 0 then
  -- claimed before uses were kept with the hash: never given back by a release
  redis.call('SADD', k_uses, '$earlier')
end
redis.call('SET', k_owner, user)
if redis.call('SADD', k_uses, use) == 0 then return {'exists', ''} end
return {'applied', ''}
