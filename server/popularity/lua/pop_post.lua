-- The platform reports an on-topic post (the creator task), idempotent by post id: the
-- `needed`-th post of a weekly cycle grants `points` as a fresh lot, once per cycle.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - post id   ARGV[2] - cycle (e.g. 2026-W48)   ARGV[3] - posts needed
-- ARGV[4] - points   ARGV[5] - now ms   ARGV[6] - lot lifetime ms   ARGV[7] - event log bound
-- Returns {'applied' | 'exists', posts in the cycle, points granted by this post, the cycle}
-- (a replay answers as the post was first counted: its cycle, not today's; '' for a post
-- recorded before the cycle was kept)
--       | {'rejected', 'user_unknown'}
local k = pop_keys(KEYS)
local post, cycle = ARGV[1], ARGV[2]
local needed, points, now = int_arg(ARGV[3], 'needed'), int_arg(ARGV[4], 'points'), int_arg(ARGV[5], 'now')
local ttl, bound = int_arg(ARGV[6], 'ttl'), events_bound(ARGV[7])
local rid = '$pt:' .. post

local stored = redis.call('HGET', k.transfers, rid)
if stored then
  local rec = cjson.decode(stored)
  return {'exists', I(rec.count), I(rec.granted), rec.cycle or ''}
end
if redis.call('HEXISTS', k.profile, 'registered_at_ms') == 0 then
  return {'rejected', 'user_unknown'}
end
local count = redis.call('HINCRBY', k.state, 'posts:' .. cycle, 1)
local granted = 0
if count == needed then
  local burned = expire_lots(k, now)
  if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
  add_lot(k, 'task:' .. cycle, points, now + ttl, 'task', now)
  points_event(k, points, 'task', bound, '')
  granted = points
end
redis.call('HSET', k.transfers, rid, cjson.encode({count = count, granted = granted, cycle = cycle}))
return {'applied', I(count), I(granted), cycle}
