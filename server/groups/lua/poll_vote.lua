-- A member's ballot: one per member (changed only where the poll allows, before its
-- deadline). Results reach the group at most once per `throttle` ms; a vote in between
-- marks the poll dirty and the workers' poll tick publishes it.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - the poll  KEYS[4] - its ballots
-- KEYS[5] - the day's voters  KEYS[6] - channel
-- ARGV[1] - voter  ARGV[2] - poll id  ARGV[3] - choices (JSON list of option indexes)
-- ARGV[4] - now ms  ARGV[5] - publish mode  ARGV[6] - day counters kept (s)
-- ARGV[7] - throttle ms
-- Returns {'applied', poll JSON, 'published' | 'dirty' | 'unchanged'} | {'rejected', code}
local k_profile, k_members, k_poll, k_ballots, k_voters, k_channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local voter, poll_id, choices = ARGV[1], ARGV[2], cjson.decode(ARGV[3])
local now, publish = int_arg(ARGV[4], 'now'), publish_command(ARGV[5])
local day_ttl, throttle = int_arg(ARGV[6], 'day_ttl'), int_arg(ARGV[7], 'throttle')

if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
if not role_of(k_members, voter) then return {'rejected', 'not_member'} end
local p = redis.call('HMGET', k_poll, 'options', 'multi', 'changeable', 'ends_ms', 'closed',
                     'published_ms')
if not p[1] then return {'rejected', 'poll_unknown'} end
if p[5] == '1' or now >= tonumber(p[4]) then return {'rejected', 'poll_closed'} end
local n = #cjson.decode(p[1])
if #choices < 1 or (#choices > 1 and p[2] ~= '1') then return {'rejected', 'bad_choice'} end
local seen = {}
for _, c in ipairs(choices) do
  if type(c) ~= 'number' or c < 0 or c >= n or c ~= math.floor(c) or seen[c] then
    return {'rejected', 'bad_choice'}
  end
  seen[c] = true
end
local before = redis.call('HGET', k_ballots, voter)
if before then
  -- the same ballot again (a retry after a lost reply) is answered, not refused: nothing
  -- changes, whether or not the poll lets a ballot change
  local was = cjson.decode(before)
  local same = #was == #choices
  for _, c in ipairs(was) do same = same and seen[c] == true end
  if same then return {'applied', cjson.encode(poll_state(k_poll, poll_id)), 'unchanged'} end
  if p[3] ~= '1' then return {'rejected', 'already_voted'} end
  for _, c in ipairs(cjson.decode(before)) do redis.call('HINCRBY', k_poll, 'c' .. I(c), -1) end
else
  redis.call('HINCRBY', k_poll, 'voters', 1)
end
for _, c in ipairs(choices) do redis.call('HINCRBY', k_poll, 'c' .. I(c), 1) end
redis.call('HSET', k_ballots, voter, ARGV[3])
redis.call('SADD', k_voters, voter)
redis.call('EXPIRE', k_voters, I(day_ttl))
local state = poll_state(k_poll, poll_id)
if now - tonumber(p[6] or '0') >= throttle then
  redis.call('HSET', k_poll, 'published_ms', I(now), 'dirty', '0')
  group_event(k_profile, k_channel, {kind = 'poll', poll = state}, publish)
  return {'applied', cjson.encode(state), 'published'}
end
redis.call('HSET', k_poll, 'dirty', '1')
return {'applied', cjson.encode(state), 'dirty'}
