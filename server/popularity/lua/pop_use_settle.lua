-- A card use, step 4, on the user's slot: the content was claimed and boosted (the use is
-- scheduled or active, and the user hears `popularity.used`), or it was refused (the price
-- comes back as the lots it came from, and the day's use is given back). Idempotent.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - use id  ARGV[2] - 'ok' | 'refuse'  ARGV[3] - refusal code  ARGV[4] - now ms
-- ARGV[5] - lot lifetime ms  ARGV[6] - event log bound  ARGV[7] - route
-- Returns {'applied' | 'exists', state, event JSON or refusal code, next due ms}
local k = pop_keys(KEYS)
local use, outcome = ARGV[1], enum_arg(ARGV[2], 'outcome', {ok = true, refuse = true})
local code, now, ttl = ARGV[3], int_arg(ARGV[4], 'now'), int_arg(ARGV[5], 'ttl')
local bound, route = events_bound(ARGV[6]), ARGV[7]

local stored = redis.call('HGET', k.uses, use)
if not stored then fail('no use ' .. use) end
local rec = cjson.decode(stored)
if rec.st == 'refused' then return {'exists', 'refused', rec.code, '0'} end
if rec.st ~= 'paid' then
  local due = rec.starts
  if rec.st ~= 'scheduled' then due = rec.ends end
  return {'exists', rec.st, rec.ev, I(due)}
end
if outcome == 'refuse' then
  local back = refund_parts(k, rec, use, ttl, now)
  redis.call('HINCRBY', k.state, 'uses:' .. rec.day, -1)
  points_event(k, back, 'refund', bound, '')
  rec.st, rec.code = 'refused', code
  redis.call('HSET', k.uses, use, cjson.encode(rec))
  return {'applied', 'refused', code, '0'}
end
local uses_today = tonumber(redis.call('HGET', k.state, 'uses:' .. rec.day) or '0')
rec.ev = emit(k.profile, k.events, k.channel, {type = 'popularity.used', use = use, card = rec.card,
              content = rec.content, price = rec.price, starts_at_ms = rec.starts,
              ends_at_ms = rec.ends, balance = points_of(k), uses_today = uses_today}, bound, route)
local due = rec.ends
if now < rec.starts then
  rec.st, due = 'scheduled', rec.starts
else
  rec.st = 'active'
  emit(k.profile, k.events, k.channel, {type = 'popularity.use.state', use = use, state = 'started'},
       bound, '')
end
redis.call('HSET', k.uses, use, cjson.encode(rec))
return {'applied', rec.st, rec.ev, I(due)}
