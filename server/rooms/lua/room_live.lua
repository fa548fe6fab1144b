-- The streamer starts or ends the room's live session, on the room's slot. A new
-- session gets the id `<room>:<n>` and an empty contribution board; ending keeps the
-- board readable until the next start. Only the room's streamer may do it.
-- KEYS[1] - room profile   KEYS[2] - room board   KEYS[3] - room channel
-- ARGV[1] - room id   ARGV[2] - the user asking   ARGV[3] - 'start' | 'end'
-- ARGV[4] - now ms    ARGV[5] - publish mode ('p' | 's')
-- Returns {'applied' | 'exists', session or ''} | {'rejected', code}
local k_profile, k_board, k_channel = KEYS[1], KEYS[2], KEYS[3]
local room, user = ARGV[1], ARGV[2]
local action = enum_arg(ARGV[3], 'live action', {start = true, ['end'] = true})
local now, publish = int_arg(ARGV[4], 'now'), publish_command(ARGV[5])

local p = redis.call('HMGET', k_profile, 'streamer', 'live', 'session')
if not p[1] then return {'rejected', 'room_unknown'} end
if p[1] ~= user then return {'rejected', 'not_streamer'} end
local live = p[2] == '1'
if action == 'start' then
  if live then return {'exists', p[3]} end
  local n = redis.call('HINCRBY', k_profile, 'sessions', 1)
  local session = room .. ':' .. I(n)
  redis.call('DEL', k_board)
  redis.call('HSET', k_profile, 'live', '1', 'session', session, 'started_ms', I(now), 'likes', '0')
  room_event(k_profile, k_channel, {kind = 'live', live = true, session = session}, publish)
  return {'applied', session}
end
if not live then return {'exists', ''} end
redis.call('HSET', k_profile, 'live', '0', 'ended_ms', I(now))
-- a gift wish belongs to its session: it closes with it
local w = redis.call('HMGET', k_profile, 'wish_open', 'wish_id', 'wish_asset', 'wish_target',
                     'wish_progress')
if w[1] == '1' then
  redis.call('HSET', k_profile, 'wish_open', '0')
  room_event(k_profile, k_channel, {kind = 'wish', wish = w[2], state = 'closed', asset = w[3],
             target = tonumber(w[4]), progress = tonumber(w[5])}, publish)
end
room_event(k_profile, k_channel, {kind = 'live', live = false, session = p[3]}, publish)
return {'applied', p[3]}
