-- The expiry sweep's index, on its own slot: users whose lots may come due, each with the
-- time to look at them. No user's script writes it (each Lua call touches one owner's
-- keys): Python notes a user after a step that added lots or lifted a freeze
-- (`ZADD LT <now>`), the sweep claims due users here, reads each one on their own slot
-- (`pop_read`: expired lots burn), then settles them here with the soonest expiry left.
-- KEYS[1] - the index (server/store/keys.py `LOTS_DUE`): user → when to look (ms)
-- ARGV[1] - 'claim' | 'settle'   ARGV[2] - now ms   ARGV[3] - leased until ms (now + lease)
-- claim:  ARGV[4] - most users. The due users, each leased: another worker does not take
--         them, and one left by a worker that died is looked at again after the lease.
-- settle: ARGV[4..] - user, soonest expiry ms ('0': no lots, or frozen: a lift notes them).
--         ARGV[2] is the time of the settle. A user still at the lease gets that time (or
--         leaves the index); a user noted since the claim (a grant, a lift: the lease
--         lowered) keeps the sooner of the two, so a lot added while the sweep read the user
--         is never lost. A settle after its lease ran out owns nothing any more (a note then
--         may not have lowered the lease): it only lowers, never removes.
-- Returns {'applied', users claimed... | users settled}
local action = enum_arg(ARGV[1], 'action', {claim = true, settle = true})
local now, leased = int_arg(ARGV[2], 'now'), int_arg(ARGV[3], 'leased')
if action == 'claim' then
  if leased <= now then fail('a lease ends after now') end
  local most = int_arg(ARGV[4], 'most')
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', I(now), 'LIMIT', 0, most)
  -- (built, not `unpack`ed: Lua unpacks at most ~8,000 values, and `most` is a setting)
  local out = {'applied'}
  for _, user in ipairs(due) do
    redis.call('ZADD', KEYS[1], 'XX', I(leased), user)
    out[#out + 1] = user
  end
  return out
end
if #ARGV % 2 ~= 1 then fail('settle takes pairs of user and expiry') end
local given = {}
for i = 4, #ARGV, 2 do given[#given + 1] = {ARGV[i], int_arg(ARGV[i + 1], 'soonest')} end
local settled = 0
for _, pair in ipairs(given) do
  local user, soonest = pair[1], pair[2]
  local score = redis.call('ZSCORE', KEYS[1], user)
  if score and tonumber(score) == leased and now < leased then
    if soonest > 0 then redis.call('ZADD', KEYS[1], I(soonest), user)
    else redis.call('ZREM', KEYS[1], user) end
  elseif soonest > 0 then
    redis.call('ZADD', KEYS[1], 'LT', I(soonest), user)
  end
  settled = settled + 1
end
return {'applied', I(settled)}
