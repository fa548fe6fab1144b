-- Before an in-chat gift is paid: both sides must be members of the group. A yes is kept
-- by transfer id, so a re-run of the gift (after a crash past the debit) gets it even if
-- membership changed since, and the gift settles as it began. A no is not kept: nothing
-- was paid and nothing recorded (the refusal is only the reply), so the same gift id sent
-- again once both are members is judged again.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - checked gifts
-- ARGV[1] - sender  ARGV[2] - recipient  ARGV[3] - transfer id  ARGV[4] - kept (s)
-- Returns {'applied' | 'exists', ''} | {'rejected', 'not_group_member'}
local k_profile, k_members, k_checked = KEYS[1], KEYS[2], KEYS[3]
local tid, kept = ARGV[3], int_arg(ARGV[4], 'kept')
local before = redis.call('HGET', k_checked, tid)
if before == 'ok' then return {'exists', ''} end
local ok = redis.call('EXISTS', k_profile) == 1
    and redis.call('HEXISTS', k_members, ARGV[1]) == 1
    and redis.call('HEXISTS', k_members, ARGV[2]) == 1
if not ok then return {'rejected', 'not_group_member'} end
redis.call('HSET', k_checked, tid, 'ok')
redis.call('EXPIRE', k_checked, I(kept))
return {'applied', ''}
