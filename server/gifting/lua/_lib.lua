-- Shared helpers, prepended to every script by server/store/scripts.py together
-- with a generated `REJECT` table (code -> {message, temporary}).
-- Scripts check everything first and write last: Redis does not roll back a
-- script that fails after its first write.

-- Argument helpers raise (a returned error reply would not stop the script); every
-- script calls them before its first write.
-- Lua numbers are doubles and print as 1e+12: always format integers with %d.
local function I(n) return string.format('%d', n) end

local function int_arg(v, name)
  local n = tonumber(v)
  if n == nil or n ~= math.floor(n) or math.abs(n) > 4503599627370496 then
    error(redis.error_reply('ERR giftwire: bad integer argument ' .. name))
  end
  return n
end

local function hget_int(key, field)
  return tonumber(redis.call('HGET', key, field) or '0')
end

-- The event log's bounds and how to publish, `<count>:<age s>:<p|s>` (s: SPUBLISH, on a
-- cluster, where the user's channel lives in the user's slot), parsed before any write.
local function events_bound(v)
  local count, age, how = string.match(v or '', '^(%d+):(%d+):([ps])$')
  if not count then error(redis.error_reply('ERR giftwire: bad event log bound ' .. tostring(v))) end
  local publish = 'PUBLISH'
  if how == 's' then publish = 'SPUBLISH' end
  return {count = tonumber(count), age = tonumber(age), publish = publish}
end

-- Append an event to the user's bounded log and publish it, with the next
-- per-user sequence number taken in this same atomic call. The stream id is the
-- sequence number, so a client resumes with XRANGE from its last one; the log keeps
-- about `count` events and disappears `age` seconds after its newest.
-- `route` is `<conn>/<request no>` when the event answers a request ('' otherwise): the
-- published payload `E<seq> <route or -> <json>` lets the hub hand this one copy to the
-- requesting connection as its reply and to the user's other connections as an event.
local function emit(kprofile, kevents, kchannel, event, bound, route)
  local seq = redis.call('HINCRBY', kprofile, 'seq', 1)
  event['seq'] = seq
  local json = cjson.encode(event)
  if route == nil or route == '' then route = '-' end
  -- the route is logged too: a gateway that lost live events (a slot moved under its
  -- subscription) catches up from the log and still answers the request
  redis.call('XADD', kevents, 'MAXLEN', '~', I(bound.count), I(seq) .. '-0', 'e', json, 'r', route)
  redis.call('EXPIRE', kevents, I(bound.age))
  redis.call(bound.publish, kchannel, 'E' .. I(seq) .. ' ' .. route .. ' ' .. json)
  return json
end

local function reject_event(tid, gift_id, code, extra)
  local r = REJECT[code]
  local ev = {type = 'gift.rejected', transfer_id = tid, gift_id = gift_id, code = code,
              message = r[1], temporary = r[2]}
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
end

local function ledger(kledger, tid, asset, delta, account, kind, now_ms)
  redis.call('XADD', kledger, '*', 'tid', tid, 'asset', asset, 'delta', I(delta),
             'account', account, 'kind', kind, 'ts', I(now_ms))
end

-- The recipient's side of a transfer: the cards leave this slot's escrow for the balance.
-- Returns the new balance.
local function credit_from_escrow(kbalances, ksystem, kledger, tid, asset, count, now_ms)
  local balance = redis.call('HINCRBY', kbalances, asset, I(count))
  redis.call('HINCRBY', ksystem, 'escrow:' .. asset, I(-count))
  ledger(kledger, tid, asset, count, 'escrow', 'gift_in', now_ms)
  return balance
end
