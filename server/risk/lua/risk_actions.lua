-- The automation rule's record, on the user's slot: the times of the last actions.
-- KEYS[1] - recent action times (newest first)
-- ARGV[1] - now ms   ARGV[2] - times kept   ARGV[3] - kept for (ms)   ARGV[4] - the kind
-- Returns {'applied', `<ms>:<kind>` entries, newest first}
local k_times = KEYS[1]
local now, keep, ttl = int_arg(ARGV[1], 'now'), int_arg(ARGV[2], 'keep'), int_arg(ARGV[3], 'ttl')
redis.call('LPUSH', k_times, I(now) .. ':' .. ARGV[4])
redis.call('LTRIM', k_times, 0, keep - 1)
redis.call('PEXPIRE', k_times, I(ttl))
return {'applied', redis.call('LRANGE', k_times, 0, -1)}
