-- Rooms' prelude: a room event gets the room's next sequence number and is published
-- on the room's channel as `V<rseq> <json>`. Room delivery is at most once (viewers
-- catch up with a snapshot), so room events are not logged.
local function room_event(kprofile, kchannel, event, publish)
  local rseq = redis.call('HINCRBY', kprofile, 'rseq', 1)
  redis.call(publish, kchannel, 'V' .. I(rseq) .. ' ' .. cjson.encode(event))
  return rseq
end

-- The audience now: the shares of gateways whose reports have not lapsed (a dead
-- gateway's share is pruned here, whoever asks first).
local function live_audience(kshares, kexpiry, now)
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', kexpiry, '-inf', I(now))) do
    redis.call('HDEL', kshares, dead)
    redis.call('ZREM', kexpiry, dead)
  end
  local total = 0
  for _, n in ipairs(redis.call('HVALS', kshares)) do total = total + tonumber(n) end
  return total
end
