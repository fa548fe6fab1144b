-- A tick's counted likes of a room (summed by one gateway), on the room's slot: the live
-- session's total, a `likes` room event, and each configured effect the total reaches,
-- broadcast once per session.
-- KEYS[1] - room profile   KEYS[2] - room channel
-- ARGV[1] - likes counted this tick   ARGV[2] - effects `<likes>:<name>,…`
-- ARGV[3] - publish mode ('p' | 's')
-- Returns {'applied', session total} | {'rejected', 'not_live'}
local k_profile, k_channel = KEYS[1], KEYS[2]
local likes, publish = int_arg(ARGV[1], 'likes'), publish_command(ARGV[3])
local p = redis.call('HMGET', k_profile, 'live', 'session')
if p[1] ~= '1' then return {'rejected', 'not_live'} end
local total = redis.call('HINCRBY', k_profile, 'likes', I(likes))
room_event(k_profile, k_channel, {kind = 'likes', likes = total}, publish)
for at, name in string.gmatch(ARGV[2], '(%d+):([%w_]+)') do
  local field = 'effect:' .. name
  if total >= tonumber(at) and redis.call('HGET', k_profile, field) ~= p[2] then
    redis.call('HSET', k_profile, field, p[2])
    room_event(k_profile, k_channel, {kind = 'effect', effect = name, likes = total}, publish)
  end
end
return {'applied', I(total)}
