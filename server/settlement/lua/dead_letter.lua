-- Set a poison entry aside: acknowledge it, copy it to the partition's dead-letter
-- stream with its error, delete it from the settlement stream. Atomic, so an entry is
-- dead-lettered once even when two workers give up on it at the same time. All keys
-- carry the partition's hash tag.
-- KEYS[1] - settlement stream partition   KEYS[2] - its dead-letter stream
-- KEYS[3] - its failed-attempts hash   KEYS[4] - its dead letters' request marks
-- ARGV[1] - consumer group   ARGV[2] - entry id   ARGV[3] - the entry's fields (JSON)
-- ARGV[4] - error   ARGV[5] - attempts   ARGV[6] - now ms   ARGV[7] - dead letters kept
-- ARGV[8] - the entry's user (their newer entries wait while this one is retried)
-- ARGV[9] - the request's key (`<kind>:<user>:<digest of its fields>`, '' none): the same
--           request sent again is answered `settlement_failed` from its mark, not run into
--           another dead letter, until an operator retries or voids this one (or it is trimmed)
-- Returns {'applied', dead-letter id} | {'not_found', ''} (no longer pending: done already)
local k_stream, k_dead, k_failures, k_marks = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, entry, fields, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local attempts, now = int_arg(ARGV[5], 'attempts'), int_arg(ARGV[6], 'now')
local kept = int_arg(ARGV[7], 'dead_letters_max')
local user_mark = 'user:' .. ARGV[8]
local request = ARGV[9]
if request == nil then fail('the request key (or an empty one) is ARGV[9]') end

if redis.call('XACK', k_stream, group, entry) == 0 then return {'not_found', ''} end
-- the oldest dead letters the bound trims take their marks along (a resend of theirs runs
-- again: no operator can retry or void them any more)
local over = redis.call('XLEN', k_dead) + 1 - kept
if over > 0 then
  for _, item in ipairs(redis.call('XRANGE', k_dead, '-', '+', 'COUNT', over)) do
    local f = item[2]
    for i = 1, #f, 2 do
      if f[i] == 'request' and f[i + 1] ~= '' and redis.call('HGET', k_marks, f[i + 1]) == item[1] then
        redis.call('HDEL', k_marks, f[i + 1])
      end
    end
  end
end
-- trimmed exactly (`~` trims whole nodes of ~100 entries: a small bound did nothing)
local id = redis.call('XADD', k_dead, 'MAXLEN', I(kept), '*', 'entry', entry,
                      'error', err, 'attempts', I(attempts), 'at', I(now), 'fields', fields,
                      'request', request)
redis.call('XDEL', k_stream, entry)
redis.call('HDEL', k_failures, entry, entry .. ':error')
if redis.call('HGET', k_failures, user_mark) == entry then redis.call('HDEL', k_failures, user_mark) end
if request ~= '' then redis.call('HSET', k_marks, request, id) end
return {'applied', id}
