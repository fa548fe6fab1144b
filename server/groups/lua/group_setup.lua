-- The platform creates a group for its creator (the owner), or changes its settings, on
-- the group's slot. The owner is fixed at creation.
-- KEYS[1] - profile   KEYS[2] - members
-- ARGV[1] - owner   ARGV[2] - type   ARGV[3] - entry rule   ARGV[4] - capacity
-- ARGV[5] - minimum fan-club level (rule `level`)   ARGV[6] - now ms
-- Returns {'applied' | 'exists', owner} | {'rejected', 'owner_fixed' | 'group_full'}
local k_profile, k_members = KEYS[1], KEYS[2]
local owner, gtype, rule = ARGV[1], ARGV[2], ARGV[3]
local capacity, min_level, now = int_arg(ARGV[4], 'capacity'), int_arg(ARGV[5], 'min_level'),
  int_arg(ARGV[6], 'now')

local current = redis.call('HGET', k_profile, 'owner')
if current and current ~= owner then return {'rejected', 'owner_fixed'} end
local members = redis.call('HLEN', k_members)
if capacity < members then return {'rejected', 'group_full'} end
redis.call('HSET', k_profile, 'owner', owner, 'type', gtype, 'rule', rule, 'capacity', I(capacity),
           'min_level', I(min_level))
if current then return {'exists', owner} end
redis.call('HSET', k_profile, 'created_ms', I(now), 'members', '1')
redis.call('HSET', k_members, owner, 'owner')
return {'applied', owner}
