-- An operator gives up on an envelope.send (a dead letter), on the group's slot: an
-- envelope the group opened stays open; one it did not open never will (a tombstone makes
-- a later env_open of it refuse), so refunding its sender cannot race a retry.
-- KEYS[1] - the envelope
-- Returns {'exists', expires ms} (it is open) | {'applied', ''} (it never will be)
local k_env = KEYS[1]
local e = redis.call('HMGET', k_env, 'expires_ms', 'state')
if e[2] == 'void' then return {'applied', ''} end
if e[1] then return {'exists', e[1]} end
redis.call('HSET', k_env, 'state', 'void')
return {'applied', ''}
