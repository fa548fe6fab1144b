-- The device blacklist, on the device's slot: set by a ban for automation, cleared by an
-- appeal that lifts it.
-- KEYS[1] - the device's blacklist entry
-- ARGV[1] - 'set' | 'clear'   ARGV[2] - case id
-- Returns {'applied' | 'exists', ''}
local action = enum_arg(ARGV[1], 'action', {set = true, clear = true})
if action == 'set' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX') then return {'applied', ''} end
  return {'exists', ''}
end
-- only the case that set it clears it (another account's appeal does not)
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {'exists', ''} end
redis.call('DEL', KEYS[1])
return {'applied', ''}
