-- The festival's time-limited avatar frame (SPEC table 3, 节日限定: 限时头像框兑换), on the
-- user's slot: redeemed on a festival day by a user who sent a gift that day, once per day
-- (redeeming again answers the frame as it was). The caller checked the day is a festival.
-- KEYS[1] - the user's profile   KEYS[2] - the user's counters of the day
-- ARGV[1] - the day (yyyymmdd)   ARGV[2] - until when the frame shows (ms)
-- Returns {'applied' | 'exists', day, until ms} | {'rejected', 'not_registered' | 'frame_needs_gift'}
local k_profile, k_day = KEYS[1], KEYS[2]
local day, until_ms = ARGV[1], int_arg(ARGV[2], 'until')
if day == '' then fail('a frame is redeemed on a day') end

local p = redis.call('HMGET', k_profile, 'registered_at_ms', 'frame_day', 'frame_until_ms')
if not p[1] then return {'rejected', 'not_registered'} end
if p[2] == day then return {'exists', day, p[3]} end
-- a gift that day, sent or still waiting (a refunded one gave its count back)
if hget_int(k_day, 'sent') < 1 then return {'rejected', 'frame_needs_gift'} end
redis.call('HSET', k_profile, 'frame_day', day, 'frame_until_ms', I(until_ms))
return {'applied', day, I(until_ms)}
