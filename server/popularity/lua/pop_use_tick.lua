-- The workers' schedule, on the user's slot: a scheduled use whose start came becomes
-- active (`started`), an active one whose end came ends (`ended`); each event once.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - use id   ARGV[2] - now ms   ARGV[3] - event log bound
-- Returns {'applied', 'active', end ms} | {'applied' | 'exists', 'ended' | 'cancelled' |
--         'refused', '0'} | {'not_due', '', due ms}
local k = pop_keys(KEYS)
local use, now, bound = ARGV[1], int_arg(ARGV[2], 'now'), events_bound(ARGV[3])
local stored = redis.call('HGET', k.uses, use)
if not stored then return {'exists', 'gone', '0'} end
local rec = cjson.decode(stored)
local function state(name)
  emit(k.profile, k.events, k.channel, {type = 'popularity.use.state', use = use, state = name},
       bound, '')
end
if rec.st == 'scheduled' then
  if now < rec.starts then return {'not_due', '', I(rec.starts)} end
  rec.st = 'active'
  state('started')
  redis.call('HSET', k.uses, use, cjson.encode(rec))
  if now < rec.ends then return {'applied', 'active', I(rec.ends)} end
end
if rec.st == 'active' then
  if now < rec.ends then return {'not_due', '', I(rec.ends)} end
  rec.st = 'ended'
  state('ended')
  redis.call('HSET', k.uses, use, cjson.encode(rec))
  return {'applied', 'ended', '0'}
end
return {'exists', rec.st, '0'}
