-- The IP-cluster rule's count, on the network's slot: the accounts of one /24 (/64) that
-- gifted one recipient within the window (bounded). One call takes a batch's gifts from
-- this network to this recipient, in order.
-- KEYS[1] - accounts → their last gift to the recipient (ms)
-- ARGV[1] - window ms   ARGV[2] - threshold   ARGV[3] - accounts kept at most
-- ARGV[4], ARGV[5], ... - account, gift ms: each gift, oldest first
-- Returns {'applied', accounts in the window, the accounts (when at the threshold or over),
--          the ms of the gift that first brought the count to the threshold (0 if none)}
local k_gifts = KEYS[1]
local window, threshold, cap = int_arg(ARGV[1], 'window'), int_arg(ARGV[2], 'threshold'),
  int_arg(ARGV[3], 'cap')
local first, last = int_arg(ARGV[5], 'now'), int_arg(ARGV[#ARGV], 'now')
redis.call('ZREMRANGEBYSCORE', k_gifts, '-inf', I(first - window))
local n, reached = redis.call('ZCARD', k_gifts), 0
if n + (#ARGV - 3) / 2 < threshold and n + (#ARGV - 3) / 2 <= cap then
  -- the common case: even if every gift here came from a new account the count stays under
  -- the threshold, so the gifts go in at once
  local add = {}
  for i = 4, #ARGV - 1, 2 do
    add[#add + 1] = int_arg(ARGV[i + 1], 'now')
    add[#add + 1] = ARGV[i]
  end
  redis.call('ZADD', k_gifts, unpack(add))
  redis.call('ZREMRANGEBYSCORE', k_gifts, '-inf', I(last - window))
  n = redis.call('ZCARD', k_gifts)
else
  for i = 4, #ARGV - 1, 2 do  -- near the threshold: counted gift by gift, to know when
    local now = int_arg(ARGV[i + 1], 'now')
    redis.call('ZREMRANGEBYSCORE', k_gifts, '-inf', I(now - window))
    redis.call('ZADD', k_gifts, I(now), ARGV[i])
    n = redis.call('ZCARD', k_gifts)
    if n > cap then
      redis.call('ZREMRANGEBYRANK', k_gifts, 0, n - cap - 1)
      n = cap
    end
    if n >= threshold and reached == 0 then reached = now end
  end
end
redis.call('PEXPIRE', k_gifts, I(window))
if n < threshold then return {'applied', I(n), '', I(reached)} end
return {'applied', I(n), cjson.encode(redis.call('ZRANGE', k_gifts, 0, -1)), I(reached)}
