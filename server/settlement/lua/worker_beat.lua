-- The live settlement workers, for sharing the partitions out: each worker beats every
-- third of a lease; one that stopped beating for a lease is dropped. Time is the server's
-- (TIME), so workers on hosts with skewed clocks, or a moved test clock, agree.
-- KEYS[1] - live workers (zset: worker → ms its beat lapses)
-- ARGV[1] - worker name   ARGV[2] - lease ms   ARGV[3] - mode: 'beat' | 'leave'
-- Returns {'applied', live workers counted after this call}
local k_live = KEYS[1]
local worker, lease = ARGV[1], int_arg(ARGV[2], 'lease')
local mode = enum_arg(ARGV[3], 'mode', {beat = true, leave = true})
if worker == '' then fail('empty worker name') end

if mode == 'leave' then
  redis.call('ZREM', k_live, worker)
  return {'applied', redis.call('ZCARD', k_live)}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', k_live, '-inf', I(now))
redis.call('ZADD', k_live, I(now + lease), worker)
-- the set goes when its last worker's beat lapses (workers may run with other leases)
local last = redis.call('ZRANGE', k_live, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', k_live, last[2])
return {'applied', redis.call('ZCARD', k_live)}
