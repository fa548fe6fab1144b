-- An appeal's hold on its case, on the hold's own slot: one appeal at a time resolves a case.
-- KEYS[1] - the case's hold
-- ARGV[1] - 'take' | 'release'   ARGV[2] - this appeal's token   ARGV[3] - hold ms ('take')
-- Returns {'applied' | 'exists', ''}: 'exists' when another appeal holds it (take) or the
-- hold is no longer this appeal's (release: it outlived its time and another took it)
local hold = KEYS[1]
local action = enum_arg(ARGV[1], 'action', {take = true, release = true})
local token = ARGV[2]
if action == 'take' then
  if redis.call('SET', hold, token, 'NX', 'PX', int_arg(ARGV[3], 'hold_ms')) then
    return {'applied', ''}
  end
  return {'exists', ''}
end
-- compare and delete in one step: a GET then a DEL could delete a hold taken in between
if redis.call('GET', hold) ~= token then return {'exists', ''} end
redis.call('DEL', hold)
return {'applied', ''}
