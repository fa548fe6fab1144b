-- The shared-device rule's count, on the device's slot: the accounts it served within the
-- window, in the order they first appeared (bounded: the oldest fall out first).
-- KEYS[1] - the device's accounts (account → first seen ms)   KEYS[2] - its blacklist entry
-- ARGV[1] - account   ARGV[2] - now ms   ARGV[3] - window ms   ARGV[4] - accounts kept at most
-- Returns {'applied', place of this account (1 first), accounts in the window, banned 0|1}
local k_accounts, k_ban = KEYS[1], KEYS[2]
local account, now = ARGV[1], int_arg(ARGV[2], 'now')
local window, cap = int_arg(ARGV[3], 'window'), int_arg(ARGV[4], 'cap')
redis.call('ZREMRANGEBYSCORE', k_accounts, '-inf', I(now - window))
redis.call('ZADD', k_accounts, 'NX', I(now), account)
local n = redis.call('ZCARD', k_accounts)
if n > cap then redis.call('ZREMRANGEBYRANK', k_accounts, 0, n - cap - 1) end
redis.call('PEXPIRE', k_accounts, I(window))
local rank = redis.call('ZRANK', k_accounts, account)
return {'applied', I((rank or n) + 1), I(math.min(n, cap)), I(redis.call('EXISTS', k_ban))}
