-- Groups' prelude. A group event gets the group's next sequence number and is published
-- on the group's channel as `V<gseq> <json>` (at most once, like room events: members
-- catch up with `group.state` / `group.history`).
local function group_event(kprofile, kchannel, event, publish)
  local gseq = redis.call('HINCRBY', kprofile, 'gseq', 1)
  redis.call(publish, kchannel, 'V' .. I(gseq) .. ' ' .. cjson.encode(event))
  return gseq
end

-- The role of `user` in the group ('owner' | 'admin' | 'member'), or false.
local function role_of(kmembers, user)
  return redis.call('HGET', kmembers, user)
end

local function is_manager(role)
  return role == 'owner' or role == 'admin'
end

-- A poll as clients see it (`group.poll`), from its hash.
local function poll_state(kpoll, poll_id)
  local h = redis.call('HGETALL', kpoll)
  local p = {}
  for i = 1, #h, 2 do p[h[i]] = h[i + 1] end
  local options = cjson.decode(p.options)
  local counts = {}
  for i = 1, #options do counts[i] = tonumber(p['c' .. I(i - 1)] or '0') end
  return {poll = poll_id, question = p.question, options = options, multi = p.multi == '1',
          changeable = p.changeable == '1', ends_at_ms = tonumber(p.ends_ms),
          closed = p.closed == '1', counts = counts, voters = tonumber(p.voters or '0')}
end

-- Append a line to the group's moderation log (bounded).
local function modlog(klog, max, actor, action, target, reason, now)
  redis.call('XADD', klog, 'MAXLEN', '~', I(max), '*', 'actor', actor, 'action', action,
             'user', target, 'reason', reason, 'at_ms', I(now))
end

-- Take `user` out of the group for `reason` (removed members may not come back unless an
-- admin approves them).
local function remove_member(kprofile, kmembers, kmutes, kremoved, kchannel, user, reason, publish)
  redis.call('HDEL', kmembers, user)
  redis.call('HDEL', kmutes, user)
  redis.call('SADD', kremoved, user)
  redis.call('HINCRBY', kprofile, 'members', -1)
  group_event(kprofile, kchannel, {kind = 'removed', user = user, reason = reason}, publish)
end
