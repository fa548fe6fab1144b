-- A card use on the boosted content's own slot: its window is added (step 3 of a use) or
-- taken away (a cancel), idempotent. The recommender reads these windows.
-- KEYS[1] - the content's boosts (`<owner>:<use>` → `<start ms>:<end ms>`)
-- ARGV[1] - `<owner>:<use>`   ARGV[2] - 'add' | 'remove'   ARGV[3] - start ms   ARGV[4] - end ms
-- ARGV[5] - kept (s, from now): boosts disappear a while after their end
-- Returns {'applied' | 'exists', ''}
local member, action = ARGV[1], enum_arg(ARGV[2], 'action', {add = true, remove = true})
if action == 'remove' then
  if redis.call('HDEL', KEYS[1], member) == 0 then return {'exists', ''} end
  return {'applied', ''}
end
local starts, ends, kept = int_arg(ARGV[3], 'start'), int_arg(ARGV[4], 'end'), int_arg(ARGV[5], 'kept')
if redis.call('HSETNX', KEYS[1], member, I(starts) .. ':' .. I(ends)) == 0 then return {'exists', ''} end
-- never shorten the life of the other uses' windows
if redis.call('TTL', KEYS[1]) < kept then redis.call('EXPIRE', KEYS[1], I(kept)) end
return {'applied', ''}
