-- The automation rule's record, on the user's slot: the times of the last actions. One call
-- takes a batch's actions of this user, in order.
-- KEYS[1] - recent action times (newest first)
-- ARGV[1] - times kept   ARGV[2] - kept for (ms)   ARGV[3], ... - `<ms>:<kind>`, oldest first
-- Returns {'applied', `<ms>:<kind>` entries joined by ',', newest first: the kept times as
--          they stood after the oldest action of the call, and every newer one} (one string,
--          not a list: a reply of ~50 items cost the engine more to read than the call did)
local k_times = KEYS[1]
local keep, ttl = int_arg(ARGV[1], 'keep'), int_arg(ARGV[2], 'ttl')
local added = #ARGV - 2
redis.call('LPUSH', k_times, unpack(ARGV, 3))  -- each to the head in turn: newest first
local recent = redis.call('LRANGE', k_times, 0, keep + added - 2)
redis.call('LTRIM', k_times, 0, keep - 1)
redis.call('PEXPIRE', k_times, I(ttl))
return {'applied', table.concat(recent, ',')}
