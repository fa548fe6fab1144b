-- The platform reports a boost's figures: the owner sees them live, and a warning for
-- each figure that crossed its threshold with this report (once per crossing: it warns
-- again only after the figure was back within its threshold).
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - use id  ARGV[2] - completion bp  ARGV[3] - interaction bp
-- ARGV[4] - followers per hour  ARGV[5] - bounce bp  ARGV[6] - warn: completion below
-- ARGV[7] - warn: interaction below  ARGV[8] - warn: bounce above  ARGV[9] - event log bound
-- Returns {'applied', warnings JSON} | {'rejected', 'use_unknown'} (no such use, or one that
--         never boosted: refused or cancelled)
local k = pop_keys(KEYS)
local use = ARGV[1]
local completion, interaction = int_arg(ARGV[2], 'completion'), int_arg(ARGV[3], 'interaction')
local followers, bounce = int_arg(ARGV[4], 'followers'), int_arg(ARGV[5], 'bounce')
local w_completion, w_interaction = int_arg(ARGV[6], 'w_completion'), int_arg(ARGV[7], 'w_interaction')
local w_bounce, bound = int_arg(ARGV[8], 'w_bounce'), events_bound(ARGV[9])
local stored = redis.call('HGET', k.uses, use)
if not stored then return {'rejected', 'use_unknown'} end
local rec = cjson.decode(stored)
-- a use refused or cancelled never boosted anything: it has no figures
if rec.st == 'refused' or rec.st == 'cancelling' or rec.st == 'cancelled' then
  return {'rejected', 'use_unknown'}
end
rec.warned = rec.warned or {}
local warnings = {}
local function check(name, past)
  if past and not rec.warned[name] then warnings[#warnings + 1] = name end
  rec.warned[name] = past or nil
end
check('completion', completion < w_completion)
check('interaction', interaction < w_interaction)
check('bounce', bounce > w_bounce)
if next(rec.warned) == nil then rec.warned = nil end
redis.call('HSET', k.uses, use, cjson.encode(rec))
local event = {type = 'popularity.dashboard', use = use, figures = {completion_bp = completion,
               interaction_bp = interaction, followers_per_hour = followers, bounce_bp = bounce}}
if #warnings > 0 then event.warnings = warnings end
emit(k.profile, k.events, k.channel, event, bound, '')
return {'applied', cjson.encode(warnings)}
