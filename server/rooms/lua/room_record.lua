-- The room's side of a settled gift sent in the room, on the room's slot, idempotent by
-- transfer id: while a session is live the sender's cards paid go on its contribution
-- board, and the gift is broadcast to the room's viewers once. The record keeps
-- `<session>|<sender>|<cost>`, so the audit can check a board against its gifts and an
-- operator can rebuild it.
-- KEYS[1] - room profile   KEYS[2] - recorded transfers   KEYS[3] - room board
-- KEYS[4] - room channel
-- ARGV[1] - transfer id   ARGV[2] - sender   ARGV[3] - recipient
-- ARGV[4] - asset         ARGV[5] - count    ARGV[6] - cost (cards the sender paid)
-- ARGV[7] - publish mode ('p' | 's')   ARGV[8] - how long a transfer stays recorded (s),
--            longer than any retry can come late
-- ARGV[9] - the boost tier the gift was priced at (0: none)
-- ARGV[10] - the sender's badge: their fan-club level with the recipient (0: none)
-- ARGV[11] - now ms: the gift settled and is recorded (the event's `at_ms`)
-- An open wish for the gift's asset counts the gift's cards; reaching its target is a
-- `wish` event (once).
-- Returns {'applied', rseq} | {'exists', ''} | {'rejected', 'room_unknown'}
local k_profile, k_recorded, k_board, k_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local transfer_id, sender, recipient, asset = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count, cost = int_arg(ARGV[5], 'count'), int_arg(ARGV[6], 'cost')
local publish = publish_command(ARGV[7])
local recorded_ttl = int_arg(ARGV[8], 'recorded_ttl')
local tier, badge = int_arg(ARGV[9], 'tier'), int_arg(ARGV[10], 'badge')
local now = int_arg(ARGV[11], 'now')

if redis.call('HEXISTS', k_recorded, transfer_id) == 1 then return {'exists', ''} end
local p = redis.call('HMGET', k_profile, 'streamer', 'live', 'session', 'wish_open', 'wish_asset',
                     'wish_id', 'wish_target')
if not p[1] then return {'rejected', 'room_unknown'} end
local session = ''
if p[2] == '1' then session = p[3] end
redis.call('HSET', k_recorded, transfer_id, session .. '|' .. sender .. '|' .. I(cost))
redis.call('EXPIRE', k_recorded, I(recorded_ttl))
if session ~= '' then redis.call('ZINCRBY', k_board, I(cost), sender) end
local event = {kind = 'gift', transfer_id = transfer_id, from = sender, to = recipient,
               asset = asset, count = count, cost = cost, at_ms = now}
if tier > 0 then event.tier = tier end
if badge > 0 then event.badge = badge end
local rseq = room_event(k_profile, k_channel, event, publish)
if p[4] == '1' and p[5] == asset then
  local target = tonumber(p[7])
  local progress = redis.call('HINCRBY', k_profile, 'wish_progress', I(count))
  if progress >= target and progress - count < target then
    room_event(k_profile, k_channel, {kind = 'wish', wish = p[6], state = 'reached', asset = asset,
               target = target, progress = progress}, publish)
  elseif progress < target then
    room_event(k_profile, k_channel, {kind = 'wish', wish = p[6], state = 'progress', asset = asset,
               target = target, progress = progress}, publish)
  end
end
return {'applied', I(rseq)}
