-- The prelude every script starts with (server/store/scripts.py prepends it, then
-- ledger/lua/_ledger.lua, then the script's own package's `_*.lua`, then the
-- script). Contract of every script: KEYS and ARGV are named once as locals at
-- the top; everything is checked first and written last (Redis does not roll back
-- a script that fails after its first write); the first reply element is a step
-- status from server/store/outcomes.py; `redis.error_reply` only for broken
-- invariants (bad arguments, unknown actions).

-- Argument helpers raise (a returned error reply would not stop the script); every
-- script calls them before its first write.
-- Lua numbers are doubles and print as 1e+12: always format integers with %d.
local function I(n) return string.format('%d', n) end

local function fail(message)
  error(redis.error_reply('ERR giftwire: ' .. message))
end

local function int_arg(v, name)
  local n = tonumber(v)
  -- `n % 1 ~= 0` is also true of NaN and ±inf; no library call: every step parses ~20 of these
  if n == nil or n % 1 ~= 0 or n > 4503599627370496 or n < -4503599627370496 then
    fail('bad integer argument ' .. name)
  end
  return n
end

-- One of `allowed` (a set), or a broken invariant: never a silent default.
local function enum_arg(v, name, allowed)
  if not allowed[v] then fail('unknown ' .. name .. ' ' .. tostring(v)) end
  return v
end

local function hget_int(key, field)
  return tonumber(redis.call('HGET', key, field) or '0')
end

-- The event log's bounds and how to publish, `<count>:<age s>:<p|s>` (s: SPUBLISH, on a
-- cluster, where the user's channel lives in the user's slot), parsed before any write.
local function events_bound(v)
  local count, age, how = string.match(v or '', '^(%d+):(%d+):([ps])$')
  if not count then fail('bad event log bound ' .. tostring(v)) end
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

-- How a shared channel (a room's, a group's) is published to: `s` SPUBLISH (a cluster) or
-- `p` PUBLISH.
local function publish_command(how)
  if how == 's' then return 'SPUBLISH' end
  if how == 'p' then return 'PUBLISH' end
  fail('bad publish mode ' .. tostring(how))
end
