-- Before an in-chat gift is paid: both sides must be members of the group. A yes is kept
-- by transfer id, so a re-run of the gift (after a crash past the debit) gets it even if
-- membership changed since, and the gift settles as it began. A no is kept for the request
-- refused (its route) only: a re-run of that request (its batch re-run, a claim) repeats the
-- refusal its sender was told, while the same gift id sent again (a new request) is judged
-- again: nothing was paid and nothing recorded, so once both are members it goes.
-- KEYS[1] - profile  KEYS[2] - members  KEYS[3] - this gift's check
-- KEYS[4] - the checks kept before this release (transfer id → answer; read only)
-- ARGV[1] - sender  ARGV[2] - recipient  ARGV[3] - transfer id  ARGV[4] - kept (s)
-- ARGV[5] - route of the request ('' if none)
-- Returns {'applied' | 'exists', ''} | {'rejected', 'not_group_member'}
local k_profile, k_members, k_check, k_old = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local tid, kept, route = ARGV[3], int_arg(ARGV[4], 'kept'), ARGV[5]
local before = redis.call('GET', k_check) or redis.call('HGET', k_old, tid)
if before == 'ok' then return {'exists', ''} end
if before == 'no:' .. route then return {'rejected', 'not_group_member'} end
-- no such group: refused, and nothing kept (naming made-up groups must not fill memory);
-- a re-run finds no group again
if redis.call('EXISTS', k_profile) == 0 then return {'rejected', 'not_group_member'} end
local ok = redis.call('HEXISTS', k_members, ARGV[1]) == 1
    and redis.call('HEXISTS', k_members, ARGV[2]) == 1
if not ok then
  -- kept as long as a yes: a re-run may come days later (an operator's dead-letter retry)
  redis.call('SET', k_check, 'no:' .. route, 'EX', I(kept))
  return {'rejected', 'not_group_member'}
end
redis.call('SET', k_check, 'ok', 'EX', I(kept))
return {'applied', ''}
