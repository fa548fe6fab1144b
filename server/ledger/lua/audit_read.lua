-- The audit's read of one owner's slot: several of its keys at one instant, so what it
-- compares (balances with system accounts, escrow with the records in flight, a board with
-- the gifts recorded for it) is never a Lua call apart. Writes nothing.
-- KEYS - keys of one owner (one slot)
-- ARGV[i] - how to read KEYS[i]: 'hash' (HGETALL; the default) or 'zset' (members and scores)
-- Returns one flat field, value list per key, in order
local out = {}
for i, key in ipairs(KEYS) do
  local how = enum_arg(ARGV[i] or 'hash', 'read', {hash = true, zset = true})
  if how == 'zset' then
    out[i] = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  else
    out[i] = redis.call('HGETALL', key)
  end
end
return out
