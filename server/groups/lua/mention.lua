-- A member was mentioned in a group: an event of theirs (exactly once per delivery,
-- resumable), whether or not they watch the group. On the member's slot.
-- KEYS[1] - profile  KEYS[2] - events  KEYS[3] - channel
-- ARGV[1] - group  ARGV[2] - the message (JSON)  ARGV[3] - event log bound
-- Returns {'applied', ''}
local k_profile, k_events, k_channel = KEYS[1], KEYS[2], KEYS[3]
local bound = events_bound(ARGV[3])
emit(k_profile, k_events, k_channel, {type = 'group.mention', group = ARGV[1],
     message = cjson.decode(ARGV[2])}, bound, '')
return {'applied', ''}
