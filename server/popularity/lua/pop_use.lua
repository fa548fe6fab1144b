-- A card use, step 1, on the user's slot: every rule of the account, then its price taken
-- from the oldest lots (to burn), idempotent by the use id: the same request again gets the
-- stored record, a request that differs in any field the client sent is a conflict.
-- KEYS[1..11] - the popularity keys of the user
-- ARGV[1] - use id  ARGV[2] - card  ARGV[3] - cover  ARGV[4] - content  ARGV[5] - content hash
-- ARGV[6] - category  ARGV[7] - price  ARGV[8] - starts ms  ARGV[9] - ends ms
-- ARGV[10] - today  ARGV[11] - now ms  ARGV[12] - uses per day  ARGV[13] - fan reach followers
-- ARGV[14] - mature: registered at or before (ms)  ARGV[15] - mature followers
-- ARGV[16] - event log bound  ARGV[17] - live room boosted too (advanced cards) or ''
-- ARGV[18] - the request's fingerprint (its fields as the client sent them, an absent start
--            absent), or '' in an entry of an older gateway
-- Returns {'applied' | 'exists', use JSON} | {'conflict', ''} | {'rejected', code}
local k = pop_keys(KEYS)
local use, card, cover, content, hash, category = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local price, starts, ends = int_arg(ARGV[7], 'price'), int_arg(ARGV[8], 'starts'), int_arg(ARGV[9], 'ends')
local today, now, per_day = ARGV[10], int_arg(ARGV[11], 'now'), int_arg(ARGV[12], 'per_day')
local reach, mature_before = int_arg(ARGV[13], 'reach'), int_arg(ARGV[14], 'mature_before')
local mature_followers, bound = int_arg(ARGV[15], 'mature_followers'), events_bound(ARGV[16])
local room, req = ARGV[17], ARGV[18] or ''
-- the parameters with their start: what a retry matches when either side has no request
-- fingerprint (a use recorded, or an entry queued, before requests had one); a start left
-- to default is "now" and differs on every retry, so the fingerprint decides when it can
local fp = table.concat({card, cover, content, hash, category, I(starts), room}, '|')

local stored = redis.call('HGET', k.uses, use)
if stored then
  local rec = cjson.decode(stored)
  local same = rec.fp == fp
  if rec.req and req ~= '' then same = rec.req == req end
  if not same then return {'conflict', ''} end
  return {'exists', stored}
end
local registered = redis.call('HGET', k.profile, 'registered_at_ms')
if not registered then return {'rejected', 'not_registered'} end
local s = redis.call('HMGET', k.state, 'frozen_at', 'category', 'followers', 'uses:' .. today,
                    'frozen_total')
if s[1] then return {'rejected', 'points_frozen'} end
if s[2] ~= category then return {'rejected', 'category_mismatch'} end
local followers = tonumber(s[3] or '0')
if card == 'fan_reach' and followers < reach then return {'rejected', 'not_enough_followers'} end
if cover == 'advanced' and (tonumber(registered) > mature_before or followers < mature_followers) then
  return {'rejected', 'not_mature'}
end
if tonumber(s[4] or '0') >= per_day then return {'rejected', 'use_limit'} end
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
if points_of(k) < price then return {'rejected', 'insufficient_points'} end
local parts = take_oldest(k, price, '$pu:' .. use, now)
redis.call('HINCRBY', k.state, 'uses:' .. today, 1)
if req == '' then req = nil end
local rec = cjson.encode({st = 'paid', fp = fp, req = req, card = card, cover = cover,
                          content = content, room = room, hash = hash, price = price,
                          starts = starts, ends = ends, day = today, lots = parts,
                          paid_at = now, frz = tonumber(s[5] or '0')})
redis.call('HSET', k.uses, use, rec)
return {'applied', rec}
