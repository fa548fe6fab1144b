-- A tick's counted likes of a room (summed by one gateway), on the room's slot: the live
-- session's total, a `likes` room event, and each configured effect the total reaches,
-- broadcast once per session. Idempotent by (gateway, batch): a gateway numbers its batches
-- and resends one whose answer it never got, so every acknowledged like counts once.
-- KEYS[1] - room profile   KEYS[2] - room channel   KEYS[3] - like batches (gateway → last)
-- ARGV[1] - likes counted this tick   ARGV[2] - effects `<likes>:<name>,…`
-- ARGV[3] - publish mode ('p' | 's')   ARGV[4] - gateway id   ARGV[5] - its batch number
-- ARGV[6] - how long the batch numbers are kept (s)
-- Returns {'applied' | 'exists', session total} | {'rejected', 'not_live'}
local k_profile, k_channel, k_batches = KEYS[1], KEYS[2], KEYS[3]
local likes, publish = int_arg(ARGV[1], 'likes'), publish_command(ARGV[3])
local gateway, batch, kept = ARGV[4], int_arg(ARGV[5], 'batch'), int_arg(ARGV[6], 'kept')
if tonumber(redis.call('HGET', k_batches, gateway) or '0') >= batch then
  return {'exists', redis.call('HGET', k_profile, 'likes') or '0'}
end
redis.call('HSET', k_batches, gateway, I(batch))
redis.call('EXPIRE', k_batches, I(kept))
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
