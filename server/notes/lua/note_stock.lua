-- A refill of the note-card stock (the platform's 动态库存), on the stock's slot: `amount`
-- more cards of `asset` may be issued by task rewards. Idempotent by refill id; the same
-- id with another asset or amount is a conflict.
-- KEYS[1] - the stock (server/store/keys.py NOTE_STOCK)
-- KEYS[2] - refill records: id → `<asset>|<amount>|<stock after>`
-- ARGV[1] - refill id   ARGV[2] - asset   ARGV[3] - amount (>= 1)   ARGV[4] - amount bound
-- Returns {'applied' | 'exists', the asset's stock after the refill (a replay: as first
--         answered)} | {'conflict', ''} |
--         {'rejected', 'amount_too_large'} (the stock would pass the bound)
local k_stock, k_refills = KEYS[1], KEYS[2]
local refill_id, asset = ARGV[1], ARGV[2]
local amount, amount_max = int_arg(ARGV[3], 'amount'), int_arg(ARGV[4], 'amount_max')
if refill_id == '' or asset == '' or amount < 1 then fail('a refill names an asset and adds cards') end
local fingerprint = asset .. '|' .. I(amount)

local stored = redis.call('HGET', k_refills, refill_id)
if stored then
  local fp, after = string.match(stored, '^(.*)|(%d+)$')
  if fp ~= fingerprint then return {'conflict', ''} end
  return {'exists', after}
end
if hget_int(k_stock, asset) + amount > amount_max then return {'rejected', 'amount_too_large'} end

local after = redis.call('HINCRBY', k_stock, asset, I(amount))
redis.call('HSET', k_refills, refill_id, fingerprint .. '|' .. I(after))
return {'applied', I(after)}
