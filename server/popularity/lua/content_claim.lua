-- A card use, step 2, on the content hash's own slot: the first account to boost content
-- with this hash owns it; a re-upload by another account is refused.
-- KEYS[1] - the hash's owner
-- ARGV[1] - the user
-- Returns {'applied' | 'exists', ''} | {'rejected', 'content_taken'}
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return {'exists', ''} end
if owner then return {'rejected', 'content_taken'} end
redis.call('SET', KEYS[1], ARGV[1])
return {'applied', ''}
