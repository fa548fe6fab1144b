-- A risk decision on the user's slot, where the settlement steps re-check it: a gifting
-- restriction or a freeze until a time, a permanent ban, or lifting one (an appeal). The
-- user hears `risk.notice`; the gateways' cached view learns the new state at once
-- (`K<state>` on the user's channel). A decision already in force is not applied again.
-- KEYS[1] - profile   KEYS[2] - events   KEYS[3] - channel   KEYS[4] - recent action times
-- KEYS[5] - recent judged action times
-- ARGV[1] - restrict | freeze | ban | lift   ARGV[2] - until ms (0: none; a lift: cleared
--           until then)   ARGV[3] - case id
-- ARGV[4] - level   ARGV[5] - reason   ARGV[6] - the evidence an appeal needs
-- ARGV[7] - now ms   ARGV[8] - event log bound
-- Returns {'applied' | 'exists', state JSON} (a restriction, freeze or ban already in force:
-- {'exists', state JSON, the case that put it in force or ''}: a re-run of the same decision
-- finds its own case there)
local k_profile, k_events, k_channel, k_times = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_judged = KEYS[5]
local action = enum_arg(ARGV[1], 'action', {restrict = true, freeze = true, ban = true, lift = true})
local until_ms, case, level, reason, appeal = int_arg(ARGV[2], 'until'), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, bound = int_arg(ARGV[7], 'now'), events_bound(ARGV[8])
local field = {restrict = 'risk_restricted_until', freeze = 'risk_frozen_until'}
local by_level = {low = 'risk_restricted_until', medium = 'risk_frozen_until'}

local function state()
  local s = redis.call('HMGET', k_profile, 'risk_restricted_until', 'risk_frozen_until', 'risk_banned')
  return cjson.encode({restricted_until = tonumber(s[1] or '0'), frozen_until = tonumber(s[2] or '0'),
                       banned = s[3] == '1'})
end

local event = {type = 'risk.notice', level = level, reason = reason, case = case, appeal = appeal}
if action == 'lift' then
  -- a resolved case's account is not restricted or frozen again at once from the same
  -- evidence (the device's count, the cluster's window): it is cleared for a while, also
  -- when the decision had run out before the appeal (nothing to lift, nothing to tell)
  -- (only what this case put in force: an old case resolved late lifts nothing newer;
  -- a decision recorded before cases were kept with it is any case's)
  local in_force, held_by
  if level == 'high' then
    local b = redis.call('HMGET', k_profile, 'risk_banned', 'risk_banned_case')
    in_force, held_by = b[1] == '1', b[2]
  else
    local d = redis.call('HMGET', k_profile, by_level[level], by_level[level] .. '_case')
    in_force, held_by = tonumber(d[1] or '0') > now, d[2]
  end
  -- another case's decision stands: this appeal neither lifts it nor clears the account
  if in_force and held_by and held_by ~= case then return {'exists', state()} end
  if in_force and level == 'high' then
    redis.call('HDEL', k_profile, 'risk_banned', 'risk_banned_case')
  elseif in_force then
    redis.call('HDEL', k_profile, by_level[level], by_level[level] .. '_case')
  end
  if redis.call('HEXISTS', k_profile, 'registered_at_ms') == 1 then
    redis.call('HSET', k_profile, 'risk_cleared_until', I(until_ms))
  end
  redis.call('DEL', k_times, k_judged)  -- judged afresh from the next action
  if not in_force then return {'exists', state()} end
  event.action = 'lifted'
elseif action == 'ban' then
  if redis.call('HGET', k_profile, 'risk_banned') == '1' then
    return {'exists', state(), redis.call('HGET', k_profile, 'risk_banned_case') or ''}
  end
  redis.call('HSET', k_profile, 'risk_banned', '1', 'risk_banned_case', case)
  event.action = 'banned'
else
  if tonumber(redis.call('HGET', k_profile, field[action]) or '0') > now then
    return {'exists', state(), redis.call('HGET', k_profile, field[action] .. '_case') or ''}
  end
  if tonumber(redis.call('HGET', k_profile, 'risk_cleared_until') or '0') > now then
    return {'exists', state(), ''}
  end
  redis.call('HSET', k_profile, field[action], I(until_ms), field[action] .. '_case', case)
  event.until_ms = until_ms
  event.action = 'restricted'
  if action == 'freeze' then event.action = 'frozen' end
end
emit(k_profile, k_events, k_channel, event, bound, '')
local s = state()
redis.call(bound.publish, k_channel, 'K' .. s)
return {'applied', s}
