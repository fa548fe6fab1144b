-- The automation rule's records, on the user's slot: the times of the last actions (every
-- kind: the rate), and apart from them the last actions judged for regularity (likes are
-- judged by the rate alone: kept apart, likes between gifts cannot push the gifts' times
-- out of what the regularity measure sees). One call takes a batch's actions of this user,
-- in order.
-- KEYS[1] - recent action times (newest first)   KEYS[2] - recent judged action times
-- ARGV[1] - times kept   ARGV[2] - kept for (ms)   ARGV[3] - judged times kept
-- ARGV[4] - n, the actions of the call   ARGV[5 .. 4 + n] - `<ms>:<kind>`, oldest first
-- ARGV[5 + n ..] - those of them judged for regularity, oldest first
-- Returns {'applied', all, judged}: each `<ms>:<kind>` entries joined by ',', newest first:
--          the kept times as they stood before the call's oldest action (of that list) and
--          every newer one (one string, not a list: a reply of ~50 items cost the engine
--          more to read than the call did)
local k_times, k_judged = KEYS[1], KEYS[2]
local keep, ttl = int_arg(ARGV[1], 'keep'), int_arg(ARGV[2], 'ttl')
local keep_judged, n = int_arg(ARGV[3], 'keep_judged'), int_arg(ARGV[4], 'n')

-- push `first`..`last` of ARGV (newest ends at the head), answer what each saw, trim
local function record(key, kept, first, last)
  local added = last - first + 1
  if added > 0 then
    for i = first, last do redis.call('LPUSH', key, ARGV[i]) end
  end
  local upto = kept + added - 2
  if added == 0 then upto = kept - 1 end  -- nothing new: as it stands
  local recent = redis.call('LRANGE', key, 0, upto)
  redis.call('LTRIM', key, 0, kept - 1)
  redis.call('PEXPIRE', key, I(ttl))
  return table.concat(recent, ',')
end

-- the judged record lives no longer than the whole one: a lift (an older version's too,
-- which knew only the whole one) or its expiry starts both afresh
if redis.call('EXISTS', k_times) == 0 then redis.call('DEL', k_judged) end
local all = record(k_times, keep, 5, 4 + n)
local judged = record(k_judged, keep_judged, 5 + n, #ARGV)
return {'applied', all, judged}
