-- A tick's counted likes of a room (summed by one gateway), on the room's slot: the live
-- session's total, a `likes` room event, and each configured effect the total reaches,
-- broadcast once per session. Idempotent by (gateway, batch): a gateway numbers its batches
-- and resends one whose answer it never got, so every acknowledged like counts once.
-- KEYS[1] - room profile   KEYS[2] - room channel   KEYS[3] - like batches (gateway → last)
-- ARGV[1] - likes counted this tick   ARGV[2] - effects `<likes>:<name>,…`
-- ARGV[3] - publish mode ('p' | 's')   ARGV[4] - gateway id   ARGV[5] - its batch number
-- ARGV[6] - how long a gateway's batch number is kept after its last batch (s)
-- ARGV[7] - now ms
-- Returns {'applied' | 'exists', session total} | {'rejected', 'not_live'}
local BATCH_GATEWAYS_PRUNE_AT = 32  -- gateways' entries kept before stale ones are pruned
local BATCH_GATEWAYS_MAX = 256  -- gateways' entries a room keeps at most
local k_profile, k_channel, k_batches = KEYS[1], KEYS[2], KEYS[3]
local likes, publish = int_arg(ARGV[1], 'likes'), publish_command(ARGV[3])
local gateway, batch, kept = ARGV[4], int_arg(ARGV[5], 'batch'), int_arg(ARGV[6], 'kept')
local now = int_arg(ARGV[7], 'now')
local last = redis.call('HGET', k_batches, gateway)  -- `<batch>:<ms>`
if last and tonumber(string.match(last, '^(%d+)')) >= batch then
  return {'exists', redis.call('HGET', k_profile, 'likes') or '0'}
end
-- gateways come and go (each start has a new id): past a few, the ones silent for longer
-- than `kept` are forgotten (an entry without a time, from an older version, counts as
-- silent), so the hash stays as small as the gateways liking the room; past
-- BATCH_GATEWAYS_MAX recent ones (a gateway restarting in a loop) the longest silent goes
if not last and redis.call('HLEN', k_batches) >= BATCH_GATEWAYS_PRUNE_AT then
  local all = redis.call('HGETALL', k_batches)
  local left, oldest, oldest_ms = 0, nil, nil
  for i = 1, #all, 2 do
    local at = tonumber(string.match(all[i + 1], ':(%d+)$') or '0')
    if at < now - kept * 1000 then
      redis.call('HDEL', k_batches, all[i])
    else
      left = left + 1
      if not oldest_ms or at < oldest_ms then oldest, oldest_ms = all[i], at end
    end
  end
  if left >= BATCH_GATEWAYS_MAX then redis.call('HDEL', k_batches, oldest) end
end
redis.call('HSET', k_batches, gateway, I(batch) .. ':' .. I(now))
redis.call('EXPIRE', k_batches, I(kept))
local p = redis.call('HMGET', k_profile, 'live', 'session')
if p[1] ~= '1' then return {'rejected', 'not_live'} end
local total = redis.call('HINCRBY', k_profile, 'likes', I(likes))
room_event(k_profile, k_channel, {kind = 'likes', likes = total}, publish)
for at, name in string.gmatch(ARGV[2], '(%d+):([%w_]+)') do
  local field = 'effect:' .. name
  if total >= tonumber(at) and redis.call('HGET', k_profile, field) ~= p[2] then
    redis.call('HSET', k_profile, field, p[2])
    room_event(k_profile, k_channel, {kind = 'effect', effect = name, likes = total}, publish)
  end
end
return {'applied', I(total)}
