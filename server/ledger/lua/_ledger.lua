-- Ledger primitives, in every script's prelude. A slot's system accounts
-- (`mint|burn|promo|escrow:<asset>` in its `s` hash) move against its users'
-- balances so that every call keeps the slot's sum per asset at zero.

-- One ledger line per balance change, in the user's ledger stream. `extra`: more fields a
-- kind of line carries (a gift's price and boost tier), a flat list of names and values.
local function ledger(kledger, transfer_id, asset, delta, account, kind, now_ms, extra)
  if extra then
    redis.call('XADD', kledger, '*', 'tid', transfer_id, 'asset', asset, 'delta', I(delta),
               'account', account, 'kind', kind, 'ts', I(now_ms), unpack(extra))
  else
    redis.call('XADD', kledger, '*', 'tid', transfer_id, 'asset', asset, 'delta', I(delta),
               'account', account, 'kind', kind, 'ts', I(now_ms))
  end
end

-- The recipient's side of a transfer: the cards leave this slot's escrow for the balance
-- (the ledger line's kind is `gift_in` unless given). Returns the new balance.
local function credit_from_escrow(kbalances, ksystem, kledger, transfer_id, asset, count, now_ms,
                                  kind)
  local balance = redis.call('HINCRBY', kbalances, asset, I(count))
  redis.call('HINCRBY', ksystem, 'escrow:' .. asset, I(-count))
  ledger(kledger, transfer_id, asset, count, 'escrow', kind or 'gift_in', now_ms)
  return balance
end
