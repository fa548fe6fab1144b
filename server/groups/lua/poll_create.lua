-- The owner or an admin opens a poll (a retry by the same creator with the same question
-- answers the poll as it is).
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - the poll  KEYS[4] - open polls
-- KEYS[5] - channel
-- ARGV[1] - actor  ARGV[2] - poll id  ARGV[3] - question  ARGV[4] - options (JSON list)
-- ARGV[5] - multi (0|1)  ARGV[6] - changeable (0|1)  ARGV[7] - ends ms  ARGV[8] - now ms
-- ARGV[9] - publish mode  ARGV[10] - open polls at most
-- Returns {'applied' | 'exists', poll JSON} | {'rejected', code}
local k_profile, k_members, k_poll, k_polls, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local actor, poll_id, question, options = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ends, now = int_arg(ARGV[7], 'ends'), int_arg(ARGV[8], 'now')
local publish, max = publish_command(ARGV[9]), int_arg(ARGV[10], 'max')

if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
if not is_manager(role_of(k_members, actor)) then return {'rejected', 'not_group_admin'} end
local p = redis.call('HMGET', k_poll, 'creator', 'question')
if p[1] then
  if p[1] ~= actor or p[2] ~= question then return {'rejected', 'poll_id_conflict'} end
  return {'exists', cjson.encode(poll_state(k_poll, poll_id))}
end
if ends <= now then return {'rejected', 'poll_closed'} end
if redis.call('ZCARD', k_polls) >= max then return {'rejected', 'too_many_polls'} end
redis.call('HSET', k_poll, 'creator', actor, 'question', question, 'options', options,
           'multi', ARGV[5], 'changeable', ARGV[6], 'ends_ms', I(ends), 'closed', '0',
           'voters', '0', 'created_ms', I(now), 'published_ms', I(now))
redis.call('ZADD', k_polls, I(ends), poll_id)
local state = poll_state(k_poll, poll_id)
group_event(k_profile, k_channel, {kind = 'poll', poll = state}, publish)
return {'applied', cjson.encode(state)}
