-- The workers' poll tick: publish results held back by the throttle once the throttle
-- allows (the last results went out at least `throttle` ms ago), and close a poll at its
-- deadline (on the movable clock; the final results go out at once). Results stay readable
-- after the close.
-- KEYS[1] - profile  KEYS[2] - the poll  KEYS[3] - open polls  KEYS[4] - channel
-- ARGV[1] - poll id  ARGV[2] - now ms  ARGV[3] - publish mode  ARGV[4] - throttle ms
-- Returns {'applied', 'closed' | 'open' | 'gone' | 'held'} ('held': results still wait for
-- the throttle) | {'exists', 'closed'} (closed before)
local k_profile, k_poll, k_polls, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local poll_id, now, publish = ARGV[1], int_arg(ARGV[2], 'now'), publish_command(ARGV[3])
local throttle = int_arg(ARGV[4], 'throttle')

local p = redis.call('HMGET', k_poll, 'ends_ms', 'closed', 'dirty', 'published_ms')
if not p[1] then
  redis.call('ZREM', k_polls, poll_id)
  return {'applied', 'gone'}
end
if p[2] == '1' then return {'exists', 'closed'} end
if now >= tonumber(p[1]) then
  redis.call('HSET', k_poll, 'closed', '1', 'dirty', '0', 'published_ms', I(now))
  redis.call('ZREM', k_polls, poll_id)
  group_event(k_profile, k_channel, {kind = 'poll', poll = poll_state(k_poll, poll_id)}, publish)
  return {'applied', 'closed'}
end
if p[3] == '1' then
  if now - tonumber(p[4] or '0') < throttle then return {'applied', 'held'} end
  redis.call('HSET', k_poll, 'dirty', '0', 'published_ms', I(now))
  group_event(k_profile, k_channel, {kind = 'poll', poll = poll_state(k_poll, poll_id)}, publish)
end
return {'applied', 'open'}
