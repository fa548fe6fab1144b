-- The IP-cluster rule's count, on the network's slot: the accounts of one /24 (/64) that
-- gifted one recipient within the window (bounded).
-- KEYS[1] - accounts → their last gift to the recipient (ms)
-- ARGV[1] - account   ARGV[2] - now ms   ARGV[3] - window ms   ARGV[4] - threshold
-- ARGV[5] - accounts kept at most
-- Returns {'applied', accounts in the window, the accounts (when at the threshold or over)}
local k_gifts = KEYS[1]
local account, now = ARGV[1], int_arg(ARGV[2], 'now')
local window, threshold, cap = int_arg(ARGV[3], 'window'), int_arg(ARGV[4], 'threshold'),
  int_arg(ARGV[5], 'cap')
redis.call('ZREMRANGEBYSCORE', k_gifts, '-inf', I(now - window))
redis.call('ZADD', k_gifts, I(now), account)
local n = redis.call('ZCARD', k_gifts)
if n > cap then redis.call('ZREMRANGEBYRANK', k_gifts, 0, n - cap - 1) end
redis.call('PEXPIRE', k_gifts, I(window))
n = math.min(n, cap)
if n < threshold then return {'applied', I(n), ''} end
return {'applied', I(n), cjson.encode(redis.call('ZRANGE', k_gifts, 0, -1))}
