-- The streamer's gift wish (礼物许愿), on the room's slot: open it for an asset with a
-- target count (and an optional end time), close it, or let it end at its time (the
-- workers' periodic job). Opening needs a live session; each change is a room event.
-- KEYS[1] - room profile   KEYS[2] - room channel
-- ARGV[1] - the user asking ('' for the periodic job)   ARGV[2] - 'open' | 'close' | 'expire'
-- ARGV[3] - asset   ARGV[4] - target count   ARGV[5] - end time ms (0: none)
-- ARGV[6] - now ms  ARGV[7] - publish mode ('p' | 's')
-- Returns {'applied' | 'exists', wish id or '', its end time ms} | {'rejected', code} |
--         {'not_due', '', the open wish's end time} (expire before it) |
--         {'not_found', '', ''} (expire, but no open wish with an end time)
local k_profile, k_channel = KEYS[1], KEYS[2]
local user = ARGV[1]
local action = enum_arg(ARGV[2], 'wish action', {open = true, close = true, expire = true})
local asset, target, ends = ARGV[3], int_arg(ARGV[4], 'target'), int_arg(ARGV[5], 'ends')
local now, publish = int_arg(ARGV[6], 'now'), publish_command(ARGV[7])

local p = redis.call('HMGET', k_profile, 'streamer', 'live', 'wish_open', 'wish_id',
                     'wish_ends_ms', 'wish_asset', 'wish_progress', 'wish_target')
if not p[1] then return {'rejected', 'room_unknown'} end
if action ~= 'expire' and p[1] ~= user then return {'rejected', 'not_streamer'} end
local open = p[3] == '1'
if action == 'open' then
  if p[2] ~= '1' then return {'rejected', 'not_live'} end
  if target < 1 then fail('target must be at least 1') end
  if open then return {'exists', p[4], p[5]} end
  local n = redis.call('HINCRBY', k_profile, 'wishes', 1)
  local id = 'w' .. I(n)
  redis.call('HSET', k_profile, 'wish_open', '1', 'wish_id', id, 'wish_asset', asset,
             'wish_target', I(target), 'wish_progress', '0', 'wish_ends_ms', I(ends))
  room_event(k_profile, k_channel, {kind = 'wish', wish = id, state = 'open', asset = asset,
             target = target, progress = 0, ends_at_ms = ends}, publish)
  return {'applied', id, I(ends)}
end
if not open or (action == 'expire' and tonumber(p[5] or '0') == 0) then
  if action == 'expire' then return {'not_found', '', ''} end
  return {'exists', '', ''}
end
if action == 'expire' and now < tonumber(p[5]) then return {'not_due', '', p[5]} end
redis.call('HSET', k_profile, 'wish_open', '0')
local state = 'closed'
if action == 'expire' then state = 'ended' end
room_event(k_profile, k_channel, {kind = 'wish', wish = p[4], state = state, asset = p[6],
           target = tonumber(p[8]), progress = tonumber(p[7])}, publish)
return {'applied', p[4], p[5]}
