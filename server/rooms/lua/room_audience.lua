-- A gateway reports how many of its connections watch the room (its share), on the
-- room's slot. Shares expire: a gateway that stops reporting (it died) stops counting
-- after `ttl` ms, whichever gateway reports next prunes it. When the total changes it
-- is published as an `audience` room event.
-- KEYS[1] - room profile   KEYS[2] - shares (hash)   KEYS[3] - share expiries (zset)
-- KEYS[4] - room channel
-- ARGV[1] - gateway id   ARGV[2] - its viewers (0 withdraws the share)
-- ARGV[3] - now ms       ARGV[4] - share ttl ms   ARGV[5] - publish mode ('p' | 's')
-- Returns {'applied', audience} | {'rejected', 'room_unknown'}
local k_profile, k_shares, k_expiry, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local gateway, viewers = ARGV[1], int_arg(ARGV[2], 'viewers')
local now, ttl = int_arg(ARGV[3], 'now'), int_arg(ARGV[4], 'ttl')
local publish = publish_command(ARGV[5])
if viewers < 0 then fail('viewers must not be negative') end
-- a room no platform created gets no keys (a client may name any room)
if redis.call('HEXISTS', k_profile, 'streamer') == 0 then return {'rejected', 'room_unknown'} end

if viewers > 0 then
  redis.call('HSET', k_shares, gateway, I(viewers))
  redis.call('ZADD', k_expiry, I(now + ttl), gateway)
else
  redis.call('HDEL', k_shares, gateway)
  redis.call('ZREM', k_expiry, gateway)
end
local total = live_audience(k_shares, k_expiry, now)
if tonumber(redis.call('HGET', k_profile, 'audience') or '0') ~= total then
  redis.call('HSET', k_profile, 'audience', I(total))
  room_event(k_profile, k_channel, {kind = 'audience', audience = total}, publish)
end
return {'applied', I(total)}
