-- A member posts a message, on the group's slot: idempotent by (sender, msg_id); removed
-- and muted members may not post; @all is for the owner and admins; a member's ad (found
-- by the gateway's pure matcher, ARGV[6]) or flooding (over `flood_max` messages in a
-- window) is a violation: a warning, and removal at the `strikes`-th. A posted message goes to the
-- bounded history, the day's metrics and the group's channel.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - mutes  KEYS[4] - removed
-- KEYS[5] - warnings  KEYS[6] - history  KEYS[7] - this post's answer (its retries')
-- KEYS[8] - flood windows  KEYS[9] - moderation log  KEYS[10] - the day's counters
-- KEYS[11] - the day's speakers  KEYS[12] - channel
-- KEYS[13] - the answers of the release before (one hash: read only)
-- ARGV[1] - sender  ARGV[2] - msg_id  ARGV[3] - text  ARGV[4] - mentions (JSON list)
-- ARGV[5] - @all (0|1)  ARGV[6] - ad found (0|1)  ARGV[7] - sender's badge  ARGV[8] - now ms
-- ARGV[9] - flood max  ARGV[10] - flood window ms  ARGV[11] - history max count
-- ARGV[12] - history max age ms  ARGV[13] - dedupe kept (s)  ARGV[14] - publish mode
-- ARGV[15] - log bound  ARGV[16] - day counters kept (s)  ARGV[17] - violations to removal
-- Returns {'applied' | 'exists', message JSON, mentioned members (JSON)} | {'rejected', code}
local k_profile, k_members, k_mutes, k_removed, k_warnings, k_history, k_posted, k_flood,
  k_log, k_day, k_speakers, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local k_posted_before = KEYS[13]
local sender, msg_id, text = ARGV[1], ARGV[2], ARGV[3]
local mentions, all, ad = cjson.decode(ARGV[4]), ARGV[5] == '1', ARGV[6] == '1'
local badge, now = int_arg(ARGV[7], 'badge'), int_arg(ARGV[8], 'now')
local flood_max, flood_window = int_arg(ARGV[9], 'flood_max'), int_arg(ARGV[10], 'flood_window')
local history_max, history_age = int_arg(ARGV[11], 'history_max'), int_arg(ARGV[12], 'history_age')
local posted_ttl, publish = int_arg(ARGV[13], 'posted_ttl'), publish_command(ARGV[14])
local log_max, day_ttl = int_arg(ARGV[15], 'log_max'), int_arg(ARGV[16], 'day_ttl')
local strikes = int_arg(ARGV[17], 'strikes')

if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'group_unknown'} end
local key = sender .. ':' .. msg_id
-- each answer a key of its own that expires (in one hash, every post kept the whole hash alive)
local stored = redis.call('GET', k_posted)
if not stored and k_posted_before then stored = redis.call('HGET', k_posted_before, key) end
if stored then
  local s = cjson.decode(stored)
  if s.r then return {'rejected', s.r} end  -- a retried violation counts once
  return {'exists', cjson.encode(s.m), cjson.encode(s.n)}
end
if redis.call('SISMEMBER', k_removed, sender) == 1 then return {'rejected', 'group_removed'} end
local role = role_of(k_members, sender)
if not role then return {'rejected', 'not_member'} end
local muted = tonumber(redis.call('HGET', k_mutes, sender) or '0')
if now < muted then return {'rejected', 'group_muted'} end
if all and not is_manager(role) then return {'rejected', 'not_group_admin'} end

-- the rules are the group's against its members: the owner and admins moderate, and are
-- not moderated
local violation = nil
if ad and not is_manager(role) then violation = 'ad' end
if not violation and not is_manager(role) then
  local window = redis.call('HGET', k_flood, sender)
  local start, n = now, 1
  if window then
    local s, c = string.match(window, '^(%d+):(%d+)$')
    if now - tonumber(s) < flood_window then start, n = tonumber(s), tonumber(c) + 1 end
  end
  redis.call('HSET', k_flood, sender, I(start) .. ':' .. I(n))
  if n > flood_max then violation = 'flood' end
end
if violation then
  local count = redis.call('HINCRBY', k_warnings, sender, 1)
  local code = 'group_violation'
  if count >= strikes then
    remove_member(k_profile, k_members, k_mutes, k_removed, k_channel, sender, violation, publish)
    modlog(k_log, log_max, 'system', 'remove', sender, violation, now)
    code = 'group_removed'
  else
    modlog(k_log, log_max, 'system', 'warning', sender, violation, now)
  end
  redis.call('SET', k_posted, cjson.encode({r = code}), 'EX', I(posted_ttl))
  return {'rejected', code}
end

-- mentions reach members only, never the sender
local mentioned, seen = {}, {}
for _, u in ipairs(mentions) do
  if u ~= sender and not seen[u] and redis.call('HEXISTS', k_members, u) == 1 then
    mentioned[#mentioned + 1] = u
    seen[u] = true
  end
end
-- ids follow the movable clock (not the server's): history pages and age use it
local last = tonumber(redis.call('HGET', k_profile, 'history_ms') or '0')
local ms = math.max(now, last)
redis.call('HSET', k_profile, 'history_ms', I(ms))
local message = {from = sender, role = role, badge = badge, text = text, at_ms = now}
if #mentioned > 0 then message.mentions = mentioned end
if all then message.all = true end
-- the entry holds the message without its id (the entry id is the id); the count is
-- trimmed exactly (one entry per post: cheap), since `~` keeps whole blocks of 100 and a
-- small `history_max` would keep many times more than configured; age is trimmed in
-- blocks, the reader skips what is older
local id = redis.call('XADD', k_history, 'MAXLEN', I(history_max), I(ms) .. '-*', 'm',
                      cjson.encode(message))
local oldest = now - history_age
if oldest > 0 then redis.call('XTRIM', k_history, 'MINID', '~', I(oldest)) end
message.id = id
redis.call('SET', k_posted, cjson.encode({m = message, n = mentioned}), 'EX', I(posted_ttl))
redis.call('HINCRBY', k_day, 'messages', 1)
redis.call('SADD', k_speakers, sender)
redis.call('EXPIRE', k_day, I(day_ttl))
redis.call('EXPIRE', k_speakers, I(day_ttl))
group_event(k_profile, k_channel, {kind = 'message', message = message}, publish)
return {'applied', cjson.encode(message), cjson.encode(mentioned)}
