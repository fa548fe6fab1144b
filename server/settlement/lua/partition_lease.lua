-- A worker's hold on a settlement partition: while it holds the lease, no other worker
-- reads the partition, so one user's requests (all in the user's partition) settle in
-- order. The lease lapses `lease` ms after its last renewal: a dead worker's partitions
-- pass to the others. One key, in the partition's slot.
-- KEYS[1] - the partition's owner key
-- ARGV[1] - worker name   ARGV[2] - lease ms   ARGV[3] - mode: 'hold' | 'release'
-- Returns (hold) {'applied', ''} taken | {'exists', ''} renewed | {'conflict', owner};
--         (release) {'applied', ''} | {'not_found', owner or ''} (not this worker's)
local k_owner = KEYS[1]
local worker, lease = ARGV[1], int_arg(ARGV[2], 'lease')
local mode = enum_arg(ARGV[3], 'mode', {hold = true, release = true})
if worker == '' then fail('empty worker name') end
if lease < 1 then fail('lease must be at least 1 ms') end

local owner = redis.call('GET', k_owner)
if mode == 'release' then
  if owner ~= worker then return {'not_found', owner or ''} end
  redis.call('DEL', k_owner)
  return {'applied', ''}
end
if not owner then
  redis.call('SET', k_owner, worker, 'PX', I(lease))
  return {'applied', ''}
end
if owner ~= worker then return {'conflict', owner} end
redis.call('PEXPIRE', k_owner, I(lease))
return {'exists', ''}
