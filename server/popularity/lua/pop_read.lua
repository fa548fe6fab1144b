-- A user's points as they stand now: expired lots are burned first (reading is enough to
-- apply expiry; the workers' sweep is not needed for correctness).
-- KEYS[1..11] - the popularity keys of the user (see _popularity.lua)
-- ARGV[1] - now ms   ARGV[2] - event log bound
-- Returns {'applied', points view JSON}
local k = pop_keys(KEYS)
local now, bound = int_arg(ARGV[1], 'now'), events_bound(ARGV[2])
local burned = expire_lots(k, now)
if burned > 0 then points_event(k, -burned, 'expire', bound, '') end
return {'applied', cjson.encode(points_view(k))}
