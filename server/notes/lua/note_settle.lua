-- Step 3 of a task reward, on the stock's slot: the pending draw is settled. `done`: the
-- user was credited with it; `return`: nobody was (the reward had been credited with
-- another draw, or the draw was forgotten past GIFTWIRE_NOTE_DRAW_TTL_S), so its cards go
-- back to the stock and leave the drawn count. Only the draw with this nonce is settled:
-- a later draw of the same reward is left alone. Settling twice changes nothing.
-- KEYS[1] - the stock   KEYS[2] - pending draws   KEYS[3] - pending draws by time
-- ARGV[1] - user   ARGV[2] - reward id   ARGV[3] - the draw's nonce   ARGV[4] - done | return
-- Returns {'applied', ''} | {'not_found', ''} (no such draw pending: settled before)
local k_stock, k_pending, k_pending_at = KEYS[1], KEYS[2], KEYS[3]
local field, nonce = ARGV[1] .. ' ' .. ARGV[2], ARGV[3]
local mode = enum_arg(ARGV[4], 'mode', {done = true, ['return'] = true})

local stored = redis.call('HGET', k_pending, field)
if not stored then return {'not_found', ''} end
local d = cjson.decode(stored)
if d.nonce ~= nonce then return {'not_found', ''} end
if mode == 'return' then
  for _, asset in ipairs(d.drawn) do
    redis.call('HINCRBY', k_stock, asset, 1)
    redis.call('HINCRBY', k_stock, 'issued:' .. asset, -1)
  end
end
redis.call('HDEL', k_pending, field)
redis.call('ZREM', k_pending_at, field)
return {'applied', ''}
